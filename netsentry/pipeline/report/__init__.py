"""``report.html`` for ``netsentry inspect``: findings rendered as one self-contained page (no network requests)."""

from netsentry.pipeline.report.html import render_report

__all__ = ["render_report"]
