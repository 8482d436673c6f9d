"""The report's "Not judged" section: what the capture was too short or too thin to judge, per scope."""

from __future__ import annotations

from typing import Any

from netsentry.pipeline.core import units
from netsentry.pipeline.report.markup import Cell, esc, table, text_cell

_WHAT = {
    "compromise": "verdict (too few connections)",
    "beacon": "beacon regularity",
    "baseline": "change vs its own baseline",
    "sustained": "sustained (severity)",
}


def _seconds(v: Any) -> Cell:
    x = units.as_float(v)
    return Cell(esc("—" if x is None else f"{x:,.1f} s"), key=x, numeric=True)


def not_judged_section(meta: dict[str, Any]) -> str:
    """A table of ``meta["not_judged"]`` (every value escaped); '' when there is nothing to list."""
    items = [j for j in meta.get("not_judged") or [] if isinstance(j, dict)]
    if not items:
        return ""
    rows = [
        [
            text_cell(j.get("scope", "")),
            text_cell(j.get("ip", "")),
            text_cell(_WHAT.get(str(j.get("what")), j.get("what", ""))),
            text_cell(j.get("reason", "")),
            _seconds(j.get("observed_s")),
            _seconds(j.get("needed_s")),
        ]
        for j in items
    ]
    headers = [("scope", False), ("address", False), ("not judged", False), ("why", False), ("observed", True),
               ("needed", True)]  # fmt: skip
    intro = ("<p>The capture was too short (or the scope too thin) to judge these behaviours: they are "
             "<strong>not judged</strong>, not clean.</p>")  # fmt: skip
    return (f'<section id="not-judged"><h2>Not judged: capture too short ({len(items)})</h2>{intro}'
            f"{table(headers, rows, sortable=True)}</section>")  # fmt: skip
