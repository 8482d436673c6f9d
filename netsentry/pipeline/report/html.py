"""The report page: assembles summary, timelines and evidence into one self-contained HTML document."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from netsentry import __version__
from netsentry.pipeline.core import units
from netsentry.pipeline.inspect.findings import Finding
from netsentry.pipeline.report.evidence import SEVERITY_RANK, compromise_overview, evidence_card, fault_overview
from netsentry.pipeline.report.markup import esc
from netsentry.pipeline.report.not_judged import not_judged_section
from netsentry.pipeline.report.summary import (
    KIND_TITLES,
    capture_facts,
    counts_table,
    headlines,
    models_section,
    pseudonym_note,
)
from netsentry.pipeline.report.svg import MAX_POINTS, timeline_svg

_KIND_ORDER = {"compromise": 0, "fault": 1}
_SECTION_IDS = {"compromise": "compromise", "fault": "faults"}
_SCOPE_WORDS = {"compromise": "flagged VM or address", "fault": "faulty link or scope"}


def _asset(name: str) -> str:
    return (files("netsentry.pipeline.report") / "assets" / name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _order(f: Finding) -> tuple[Any, ...]:
    return (_KIND_ORDER.get(f.kind, 2), -SEVERITY_RANK.get(f.severity, 0), f.start_ns, str(f.scope), str(f.finding_id))


def _scope_groups(findings: Sequence[Finding]) -> list[list[Finding]]:
    """Findings of one kind grouped by scope, in order of each scope's first (most severe) finding."""
    groups: dict[str, list[Finding]] = {}
    for f in findings:
        groups.setdefault(str(f.scope), []).append(f)
    return list(groups.values())


def _timeline_of(f: Finding) -> list[Any]:
    tl = f.evidence.get("timeline") if isinstance(f.evidence, dict) else None
    return tl if isinstance(tl, list) else []


def _timeline_figure(group: Sequence[Finding]) -> str:
    """The scope's score timeline (windows of all its findings merged), with a legend."""
    windows = [w for f in group for w in _timeline_of(f)]
    spans = [(f.start_ns, f.end_ns, f"{f.type} ({f.severity}): {f.summary}") for f in group]
    svg = timeline_svg(windows, group[0].threshold, title=f"Score per window of {group[0].scope}", spans=spans)
    if not svg:
        return '<p class="sub">No per-window scores recorded for this scope.</p>'
    n = len({w.get("start_ns") for w in windows if isinstance(w, dict)})
    note = f", at most {MAX_POINTS} points drawn (peaks kept)" if n > MAX_POINTS else ""
    legend = ('<span class="legend-score"></span>score per window<span class="legend-thr"></span>threshold'
              '<span class="legend-flag"></span>flagged windows')  # fmt: skip
    return f"<figure>{svg}<figcaption>{legend} · {esc(units.num(n))} windows{esc(note)}</figcaption></figure>"


def _kind_section(kind: str, findings: Sequence[Finding], anchors: dict[int, str], start: int) -> str:
    """Overview table, then per scope: its timeline and the evidence card of each of its findings."""
    if not findings:
        return ""
    by_id = {f.finding_id: anchors[id(f)] for f in findings}
    overview = compromise_overview(findings, by_id) if kind == "compromise" else fault_overview(findings, by_id)
    out = [f'<section id="{_SECTION_IDS[kind]}"><h2>{esc(KIND_TITLES[kind])} ({len(findings)})</h2>', overview]
    for i, group in enumerate(_scope_groups(findings), start):
        first = group[0]
        sub = " · ".join(esc(x) for x in (first.scope_type, first.tenant, str(first.ip).replace(";", ", ")) if x)
        out.append(f'<section class="scope" id="s{i}"><h3>{esc(first.scope)}</h3>')
        out.append(f'<p class="sub">{_SCOPE_WORDS[kind]}{" · " + sub if sub else ""}</p>')
        out.append(_timeline_figure(group))
        out.extend(evidence_card(f, anchors[id(f)]) for f in group)
        out.append("</section>")
    out.append("</section>")
    return "".join(out)


def _nothing_flagged(meta: dict[str, Any]) -> str:
    checked = [f"{units.num(meta[k])} {k.replace('_', ' ')}" for k in ("tenant_windows", "fault_windows")
               if meta.get(k) is not None]  # fmt: skip
    over = f" over {' and '.join(checked)}" if checked else ""
    return (f'<p class="nothing"><strong>Nothing flagged.</strong> No VM or address crossed the compromise threshold '
            f"and no link or scope crossed the fault threshold{esc(over)}.</p>")  # fmt: skip


def render_report(findings: Sequence[Finding], meta: dict[str, Any]) -> str:
    """A self-contained HTML page (assets inlined, no network requests)."""
    meta = meta if isinstance(meta, dict) else {}
    ordered = sorted(findings, key=_order)
    anchors = {id(f): f"f{i}" for i, f in enumerate(ordered, 1)}
    by_kind = {k: [f for f in ordered if f.kind == k] for k in KIND_TITLES}
    css, js = _asset("report.css"), _asset("report.js")
    csp = (f"default-src 'none'; style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; img-src data:; "
           "base-uri 'none'; form-action 'none'")  # fmt: skip
    title = "netsentry report" + (f" — {meta['workspace']}" if meta.get("workspace") else "")
    generated = f"Generated {meta['generated_at']} · " if meta.get("generated_at") else ""
    summary = [counts_table(ordered), headlines(ordered, {f.finding_id: anchors[id(f)] for f in ordered})]
    body = [
        f'<header><h1>netsentry inspection report</h1><p class="sub">{esc(generated)}netsentry {esc(__version__)}'
        f" · times in UTC</p>{pseudonym_note(meta)}</header>",
        '<section id="summary"><h2>Summary</h2>',
        capture_facts(meta),
        *(summary if ordered else [_nothing_flagged(meta)]),
        models_section(meta),
        "</section>",
        not_judged_section(meta),
        _kind_section("compromise", by_kind["compromise"], anchors, 1),
        _kind_section("fault", by_kind["fault"], anchors, len(by_kind["compromise"]) + 1),
        "<footer>Scores: higher is more anomalous; a window is flagged when its score reaches the threshold. "
        "Times are UTC.</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>{css}</style></head>\n<body>"
        + "\n".join(b for b in body if b)
        + f"\n<script>{js}</script></body></html>\n"
    )
