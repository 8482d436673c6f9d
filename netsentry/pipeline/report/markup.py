"""Small HTML builders; every piece of text goes through :func:`esc`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any


def esc(x: Any) -> str:
    """Text (of anything) escaped for element content and quoted attributes."""
    return escape(str(x), quote=True)


@dataclass(frozen=True)
class Cell:
    """A table cell: ready ``html``; ``key`` sorts it (numbers sort numerically); ``numeric`` right-aligns it."""

    html: str
    key: float | str | None = None
    numeric: bool = False


def text_cell(x: Any) -> Cell:
    """A cell of escaped text."""
    return Cell(esc(x))


def table(headers: Sequence[tuple[str, bool]], rows: Sequence[Sequence[Cell]], *, cls: str = "",
          sortable: bool = False, caption: str = "") -> str:  # fmt: skip
    """A ``<table>``; ``headers`` are (label, numeric); sortable tables get header buttons (see report.js)."""
    classes = " ".join(c for c in (cls, "sortable" if sortable else "") if c)
    out = [f'<table class="{esc(classes)}">' if classes else "<table>"]
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    out.append("<thead><tr>")
    for name, numeric in headers:
        inner = f'<button type="button">{esc(name)}</button>' if sortable else esc(name)
        cls_attr = ' class="n"' if numeric else ""
        out.append(f'<th scope="col"{cls_attr}>{inner}</th>')
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for c in row:
            attrs = ' class="n"' if c.numeric else ""
            if sortable and c.key is not None:
                key = f"{c.key:.17g}" if isinstance(c.key, float) else c.key
                attrs += f' data-v="{esc(key)}"'
            out.append(f"<td{attrs}>{c.html}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def badge(severity: str) -> str:
    """A coloured severity label (unknown severities shown plainly)."""
    cls = severity if severity in ("high", "medium", "low") else "other"
    return f'<span class="sev sev-{cls}">{esc(severity or "?")}</span>'
