"""The top of the report: capture facts, findings by kind and severity, headlines, models and MLflow runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from netsentry.pipeline.core import units
from netsentry.pipeline.inspect.findings import SEVERITIES, Finding
from netsentry.pipeline.report.links import link, model_name, model_version_url, run_url, ui_base
from netsentry.pipeline.report.markup import Cell, badge, esc, table, text_cell

KIND_TITLES = {"compromise": "Compromised VMs / addresses", "fault": "Network faults"}
_MODEL_KINDS = {"compromise": "compromise", "faults": "fault"}


def capture_facts(meta: dict[str, Any]) -> str:
    """A definition list of the capture span (UTC), workspace and table sizes present in ``meta``."""
    start, end = meta.get("capture_start_ns"), meta.get("capture_end_ns")
    items: list[tuple[str, str]] = []
    if start is not None or end is not None:
        span = f"{units.utc(start)} – {units.utc(end)} UTC"
        if isinstance(start, int) and isinstance(end, int):
            span += f" ({units.duration(end - start)})"
        items.append(("Capture span", esc(span)))
    else:
        items.append(("Capture span", "not recorded"))
    for key, title in (("packets", "Packets"), ("flows", "Flows"), ("tenant_windows", "Tenant windows"),
                       ("fault_windows", "Fault windows")):  # fmt: skip
        if meta.get(key) is not None:
            items.append((title, esc(units.num(meta[key]))))
    if meta.get("unjudged_scopes"):
        n, least = units.num(meta["unjudged_scopes"]), meta.get("min_connections", "?")
        why = f"{n} addresses above the compromise threshold only in windows of fewer than {least} connections"
        items.append(("Not judged", esc(why + " (too little to judge)")))
    if meta.get("workspace"):
        items.append(("Workspace", f"<code>{esc(meta['workspace'])}</code>"))
    scale = units.as_float(meta.get("threshold_scale"))
    if scale is not None and scale != 1:
        items.append(("Threshold scale", esc(f"{units.num(scale)} × each model's threshold (--threshold-scale)")))
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def pseudonym_note(meta: dict[str, Any]) -> str:
    """A visible note when addresses and names were pseudonymized."""
    if not meta.get("pseudonymized"):
        return ""
    return ('<p class="note pseudo" role="note"><strong>Pseudonymized:</strong> addresses and names in this report '
            "are pseudonyms, not the real ones; map them back with the workspace's pseudonym key.</p>")  # fmt: skip


def counts_table(findings: Sequence[Finding]) -> str:
    """Findings counted by kind (rows) and severity (columns)."""
    rows = []
    for kind, title in KIND_TITLES.items():
        mine = [f for f in findings if f.kind == kind]
        cells = [text_cell(title)]
        cells += [Cell(esc(units.num(sum(f.severity == s for f in mine))), numeric=True) for s in SEVERITIES]
        cells.append(Cell(f"<strong>{esc(units.num(len(mine)))}</strong>", numeric=True))
        rows.append(cells)
    headers = [("Kind", False), *((s, True) for s in SEVERITIES), ("Total", True)]
    return table(headers, rows, cls="counts")


def headlines(findings: Sequence[Finding], anchors: dict[str, str]) -> str:
    """One sentence per high-severity finding, linking to its evidence."""
    high = [f for f in findings if f.severity == "high"]
    if not high:
        return ""
    items = "".join(
        f'<li>{badge(f.severity)} <a href="#{anchors[f.finding_id]}">{esc(f.summary or f.scope)}</a></li>' for f in high
    )
    return f'<ul class="headlines">{items}</ul>'


def models_section(meta: dict[str, Any]) -> str:
    """The models used (version, threshold, training run) and the inspection run, linked to the MLflow UI."""
    ui = ui_base(meta)
    models = meta.get("models") if isinstance(meta.get("models"), dict) else {}
    rows = []
    for key in sorted(models, key=lambda k: (k not in _MODEL_KINDS, str(k))):
        m = models[key] if isinstance(models[key], dict) else {}
        name = model_name(m.get("uri"))
        version = m.get("version")
        run = m.get("run_id")
        rows.append([
            text_cell(key),
            Cell(f"<code>{esc(m.get('uri', units.DASH))}</code>"),
            Cell(link(model_version_url(ui, name, version), version) if version not in (None, "") else units.DASH),
            Cell(esc(units.num(m.get("threshold"))), numeric=True),
            Cell(link(run_url(ui, m.get("experiment_id"), run), run) if run else units.DASH),
        ])  # fmt: skip
    out = ["<h3>Models</h3>"]
    if rows:
        headers = [
            ("Detector", False),
            ("Model", False),
            ("Version", False),
            ("Threshold", True),
            ("Training run", False),
        ]
        out.append(table(headers, rows, cls="models"))
    else:
        out.append("<p>No model information recorded.</p>")
    run = meta.get("inspection_run_id")
    if run:
        url = run_url(ui, meta.get("inspection_experiment_id"), run)
        out.append(f"<p>Inspection run (findings and this report as artifacts): {link(url, run)}</p>")
    if not ui:
        out.append(_how_to_open(meta))
    return "".join(out)


def _how_to_open(meta: dict[str, Any]) -> str:
    tracking = meta.get("tracking_uri")
    ws = meta.get("workspace") or "WORKSPACE"
    where = f"MLflow tracking URI: <code>{esc(tracking)}</code>. " if tracking else ""
    return f'<p class="note">{where}Browse the runs and models with <code>netsentry ui -w {esc(ws)}</code>.</p>'
