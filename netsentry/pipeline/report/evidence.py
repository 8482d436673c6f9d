"""Findings as tables: one overview row per finding, and an evidence card per finding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from netsentry.pipeline.core import units
from netsentry.pipeline.inspect.findings import Finding
from netsentry.pipeline.report import fmt
from netsentry.pipeline.report.arp_evidence import arp_table
from netsentry.pipeline.report.markup import Cell, badge, esc, table, text_cell

SEVERITY_RANK = {"high": 3, "medium": 2, "low": 1}
TOP_FEATURES = 3


def _list(ev: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    v = ev.get(key)
    return [x for x in v if isinstance(x, Mapping)] if isinstance(v, list) else []


def _dict(ev: Mapping[str, Any], key: str) -> dict[str, Any]:
    v = ev.get(key)
    return {str(k): v[k] for k in v} if isinstance(v, Mapping) else {}


def _numcell(x: Any, text: str | None = None) -> Cell:
    v = units.as_float(x)
    return Cell(esc(units.num(x) if text is None else text), key=v, numeric=True)


def _score_cell(f: Finding) -> Cell:
    thr = units.as_float(f.threshold)
    ratio = f.score / thr if thr and thr > 0 else None
    text = f"{units.num(f.score)} / {units.num(f.threshold)}" + (f" ({units.fold(ratio)})" if ratio is not None else "")
    return Cell(esc(text), key=units.as_float(f.score), numeric=True)


def _time_cell(ns: int) -> Cell:
    return Cell(esc(units.utc(ns)), key=float(ns) if isinstance(ns, int) else None)


def _scope_cell(f: Finding, anchor: str) -> Cell:
    return Cell(f'<a href="#{anchor}">{esc(f.scope)}</a>', key=str(f.scope))


def _top_features(f: Finding, n: int = TOP_FEATURES) -> str:
    """The first features as 'name value (x-fold vs baseline)'."""
    items = []
    for feat in _list(f.evidence, "summary_features")[:n]:
        name = str(feat.get("name", "?"))
        val = fmt.named(name, feat.get("value"), str(feat.get("meaning", "")))
        vs = units.as_float(feat.get("vs_baseline"))
        vs = vs if vs is not None else units.as_float(feat.get("vs_peers"))
        items.append(f"{fmt.label(name)}: {val}" + (f" ({units.fold(vs)})" if vs is not None else ""))
    return "<br>".join(esc(i) for i in items) or units.DASH


def _magnitude_brief(f: Finding, n: int = 3) -> str:
    mag = _dict(f.evidence, "magnitude")
    items = [f"{fmt.label(k)}: {fmt.named(k, v)}" for k, v in list(mag.items())[:n]]
    return "<br>".join(esc(i) for i in items) or units.DASH


def compromise_overview(findings: Sequence[Finding], anchors: dict[str, str]) -> str:
    """A sortable table of compromise findings."""
    headers = [("Severity", False), ("Scope", False), ("IP", False), ("Tenant", False),
               ("First flagged (UTC)", False), ("Last flagged (UTC)", False), ("Windows", True),
               ("Score / threshold", True), ("Top features", False)]  # fmt: skip
    rows = [[
        Cell(badge(f.severity), key=float(SEVERITY_RANK.get(f.severity, 0))),
        _scope_cell(f, anchors[f.finding_id]),
        Cell("<br>".join(esc(ip) for ip in str(f.ip).split(";") if ip) or units.DASH, key=str(f.ip)),
        text_cell(f.tenant or units.DASH),
        _time_cell(f.start_ns),
        _time_cell(f.end_ns),
        _numcell(f.windows),
        _score_cell(f),
        Cell(_top_features(f)),
    ] for f in findings]  # fmt: skip
    return f'<div class="wide">{table(headers, rows, cls="findings", sortable=True)}</div>'


def fault_overview(findings: Sequence[Finding], anchors: dict[str, str]) -> str:
    """A sortable table of fault incidents."""
    headers = [("Severity", False), ("Type", False), ("Scope", False), ("Start (UTC)", False), ("End (UTC)", False),
               ("Duration", True), ("Windows", True), ("Score / threshold", True), ("Magnitude", False),
               ("Top features", False)]  # fmt: skip
    rows = [[
        Cell(badge(f.severity), key=float(SEVERITY_RANK.get(f.severity, 0))),
        text_cell(f.type),
        _scope_cell(f, anchors[f.finding_id]),
        _time_cell(f.start_ns),
        _time_cell(f.end_ns),
        _numcell(f.end_ns - f.start_ns, units.duration(f.end_ns - f.start_ns)),
        _numcell(f.windows),
        _score_cell(f),
        Cell(_magnitude_brief(f)),
        Cell(_top_features(f)),
    ] for f in findings]  # fmt: skip
    return f'<div class="wide">{table(headers, rows, cls="findings", sortable=True)}</div>'


def features_table(f: Finding) -> str:
    """Each summary feature: value vs its own baseline vs peers, with x-folds."""
    rows = []
    for feat in _list(f.evidence, "summary_features"):
        name, meaning = str(feat.get("name", "?")), str(feat.get("meaning", ""))
        what = f"<code>{esc(name)}</code>" + (f'<div class="meaning">{esc(meaning)}</div>' if meaning else "")
        rows.append([
            Cell(what),
            Cell(esc(fmt.named(name, feat.get("value"), meaning)), numeric=True),
            Cell(esc(fmt.named(name, feat.get("baseline"), meaning)), numeric=True),
            Cell(esc(fmt.named(name, feat.get("peers"), meaning)), numeric=True),
            Cell(esc(units.fold(feat.get("vs_baseline"))), numeric=True),
            Cell(esc(units.fold(feat.get("vs_peers"))), numeric=True),
        ])  # fmt: skip
    if not rows:
        return ""
    headers = [("Feature", False), ("Value", True), ("Own baseline", True), ("Peers", True), ("vs baseline", True),
               ("vs peers", True)]  # fmt: skip
    return table(headers, rows, cls="evidence-t", caption="Features furthest from normal")


def named_values_table(values: dict[str, Any], caption: str) -> str:
    """A two-column table of named numbers (counts, magnitude), formatted by name."""
    if not values:
        return ""
    rows = [[Cell(esc(fmt.label(k))), Cell(esc(fmt.named(k, v)), numeric=True)] for k, v in values.items()]
    return table([("Measure", False), ("Value", True)], rows, cls="evidence-t kv", caption=caption)


def remotes_table(f: Finding) -> str:
    """Top remote endpoints with flows, packets, bytes and ports."""
    rows = []
    for r in _list(f.evidence, "remotes"):
        ports = r.get("ports")
        ports_text = ", ".join(str(p) for p in ports[:12]) + (" …" if len(ports) > 12 else "") if isinstance(
            ports, list) else units.num(ports)  # fmt: skip
        rows.append([Cell(f"<code>{esc(r.get('ip', '?'))}</code>"),
                     Cell(esc(units.num(r.get("flows"))), numeric=True),
                     Cell(esc(units.num(r.get("packets"))), numeric=True),
                     Cell(esc(units.bytes_decimal(r.get("bytes"))), numeric=True),
                     Cell(esc(ports_text))])  # fmt: skip
    if not rows:
        return ""
    headers = [("Remote", False), ("Flows", True), ("Packets", True), ("Bytes", True), ("Ports", False)]
    return table(headers, rows, cls="evidence-t", caption="Top remote endpoints")


def ports_table(f: Finding) -> str:
    """Top remote ports with flows and failed handshakes."""
    rows = []
    for p in _list(f.evidence, "ports"):
        flows, failed = units.as_float(p.get("flows")), units.as_float(p.get("failed"))
        share = f" ({units.pct(failed / flows)})" if flows and failed is not None else ""
        rows.append([Cell(esc(units.num(p.get("port"))), numeric=True), text_cell(p.get("proto", units.DASH)),
                     Cell(esc(units.num(p.get("flows"))), numeric=True),
                     Cell(esc(units.num(p.get("failed")) + share), numeric=True)])  # fmt: skip
    if not rows:
        return ""
    return table([("Port", True), ("Proto", False), ("Flows", True), ("Failed", True)], rows, cls="evidence-t",
                 caption="Top remote ports")  # fmt: skip


def _cap_reason(f: Finding) -> str:
    """Why a fault stays at low severity whatever its score: too little evidence of loss, or reordering."""
    ev = f.evidence if isinstance(f.evidence, Mapping) else {}
    if ev.get("insufficient_evidence"):
        return f"too little evidence of loss: {ev['insufficient_evidence']}"
    if f.kind == "fault" and f.type == "reordering":
        return "reordering (duplicate ACKs or out-of-order packets without retransmission) is not loss"
    return ""


def _facts(f: Finding) -> str:
    items = [
        ("Kind", f"{f.kind} ({f.type})" if f.type and f.type != f.kind else f.kind),
        ("Scope", f"{f.scope} ({f.scope_type})" if f.scope_type else f.scope),
        ("Tenant / VM", " / ".join(x for x in (f.tenant, f.vm) if x)),
        ("Address", str(f.ip).replace(";", ", ")),
        ("Capture point", f.capture_point),
        (
            "Flagged span",
            f"{units.utc(f.start_ns)} – {units.utc(f.end_ns)} UTC ({units.duration(f.end_ns - f.start_ns)})",
        ),
        ("Flagged windows", units.num(f.windows)),
        ("Severity capped at low", _cap_reason(f)),
        ("Score / threshold", f"{units.num(f.score)} / {units.num(f.threshold)}"),
        ("Model", f"{f.model_uri} (version {f.model_version})" if f.model_version else f.model_uri),
        ("Finding id", f.finding_id),
    ]
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items if v) + "</dl>"


def evidence_card(f: Finding, anchor: str) -> str:
    """A collapsible card (open for high severity) with the finding's facts and all its evidence tables."""
    ev = f.evidence if isinstance(f.evidence, Mapping) else {}
    parts = [
        _facts(f),
        features_table(f),
        named_values_table(_dict(ev, "magnitude"), "Magnitude"),
        named_values_table({k: v for k, v in _dict(ev, "loss_evidence").items() if v is not None}, "Evidence of loss"),
        named_values_table(_dict(ev, "counts"), "Counts over the flagged span"),
        arp_table(f),
        remotes_table(f),
        ports_table(f),
    ]
    is_open = " open" if f.severity == "high" else ""
    head = f'{badge(f.severity)} <span class="scope">{esc(f.scope)}</span> {esc(f.summary)}'
    body = "".join(p for p in parts if p)
    return (
        f'<details class="card" id="{anchor}"{is_open}><summary>{head}</summary>'
        f'<div class="tables">{body}</div></details>'
    )


def _span(start_ns: int, end_ns: int) -> str:
    """A flagged span as the report shows it: both ends in UTC and how long it lasted."""
    return f"{units.utc(start_ns)} – {units.utc(end_ns)} UTC ({units.duration(end_ns - start_ns)})"
