"""The inspect stage: score a workspace's feature windows with registered models; write findings and a report."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from netsentry import __version__
from netsentry.pipeline.capture.stage import captured_tenant_map
from netsentry.pipeline.capture.tenants import router_hosts, vm_hosts
from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.errors import ConfigError, TrackingError
from netsentry.pipeline.core.io import atomic_dir, atomic_write_text, manifest_digest, read_manifest, write_manifest
from netsentry.pipeline.core.tracking import EXPERIMENTS, ModelRef, Tracker
from netsentry.pipeline.features.stage import read_feature_table
from netsentry.pipeline.inspect.arp import arp_findings, read_arp
from netsentry.pipeline.inspect.compromise import MIN_CONNECTIONS, compromise_findings, require_support
from netsentry.pipeline.inspect.faults import fault_findings
from netsentry.pipeline.inspect.findings import (
    SEVERITIES,
    Finding,
    findings_document,
    findings_from_table,
    findings_table,
)
from netsentry.pipeline.inspect.flow_evidence import FlowIndex
from netsentry.pipeline.inspect.not_judged import compromise_not_judged
from netsentry.pipeline.inspect.scoring import score_windows
from netsentry.pipeline.ui import remote_ui_url

log = logging.getLogger(__name__)

REPORT = "report.html"
DEFAULT_UI_URL = "http://127.0.0.1:5000"  # where `netsentry ui` serves a local store
DEFAULT_MODELS = {
    "compromise": f"models:/{EXPERIMENTS['compromise']}@champion",
    "faults": f"models:/{EXPERIMENTS['faults']}@champion",
}


@dataclass
class InspectOptions:
    """Which models score the workspace and how findings are rendered.

    ``compromise_model`` / ``fault_model``: model URIs; None means the kind's ``champion``, and a kind without
    a champion is then skipped (an explicit URI that does not resolve is an error).
    ``pseudonym_key``: when set, every IP address in findings and report becomes a keyed pseudonym.
    """

    compromise_model: str | None = None
    fault_model: str | None = None
    threshold_scale: float = 1.0
    pseudonym_key: bytes | None = None
    log_run: bool = True
    mlflow_ui_url: str | None = None
    force: bool = False

    def __post_init__(self) -> None:
        if not self.threshold_scale > 0:
            raise ConfigError(f"threshold_scale must be > 0, got {self.threshold_scale}")


@dataclass
class InspectResult:
    """What an inspection found and where it wrote it."""

    findings: list[Finding]
    findings_dir: Path
    report: Path
    models: dict[str, ModelRef] = field(default_factory=dict)
    skipped_kinds: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    tracking_uri: str = ""
    windows_scored: dict[str, int] = field(default_factory=dict)
    skipped_unchanged: bool = False
    not_judged: list[dict[str, Any]] = field(default_factory=list)
    """What the capture was too short or thin to judge (``not_judged.py``), as in findings.json."""

    @property
    def counts(self) -> dict[str, int]:
        """Findings per ``kind:severity``."""
        return dict(Counter(f"{f.kind}:{f.severity}" for f in self.findings))


def at_or_above(findings: list[Finding], severity: str) -> list[Finding]:
    """The findings of ``severity`` or worse (``--fail-on``: only these make the exit code 3)."""
    if severity not in SEVERITIES:
        raise ConfigError(f"fail-on severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    worst = SEVERITIES.index(severity)
    return [f for f in findings if SEVERITIES.index(f.severity) <= worst]


def _resolve(tracker: Tracker, options: InspectOptions) -> tuple[dict[str, ModelRef], dict[str, str]]:
    refs: dict[str, ModelRef] = {}
    skipped: dict[str, str] = {}
    for kind, given in (("compromise", options.compromise_model), ("faults", options.fault_model)):
        uri = given or DEFAULT_MODELS[kind]
        try:
            refs[kind] = tracker.resolve_model(uri)
        except TrackingError as e:
            if given:
                raise
            skipped[kind] = f"no {uri} ({e}); train one with `netsentry train --kind {kind}`"
    if not refs:
        raise TrackingError(
            f"no champion models in {tracker.uri}: train with `netsentry train --kind compromise|faults` "
            "or pass --compromise-model/--fault-model"
        )
    return refs, skipped


def run_inspect(workspace: str | Path, options: InspectOptions, *, tracking_uri: str | None = None) -> InspectResult:
    """Score the workspace's feature windows, write ``findings/`` and ``report.html``, log an inspection run."""
    ws = Path(workspace)
    tracker = Tracker(ws, tracking_uri)
    refs, skipped = _resolve(tracker, options)
    inputs = {
        "tenant_windows": manifest_digest(catalog.manifest(ws, catalog.TENANT_WINDOWS)),
        "fault_windows": manifest_digest(catalog.manifest(ws, catalog.FAULT_WINDOWS)),
        "arp": manifest_digest(catalog.manifest(ws, catalog.ARP)),
        "models": {k: [r.uri, r.version, r.run_id] for k, r in refs.items()},
    }
    config = {
        "threshold_scale": options.threshold_scale,
        "pseudonymized": options.pseudonym_key is not None,
        "pseudonym_key_sha256": _key_digest(options.pseudonym_key),
    }
    out_dir, report = catalog.path(ws, catalog.FINDINGS), ws / REPORT
    prev = read_manifest(out_dir)
    if catalog.up_to_date([prev], {"inputs": inputs, "config": config}, force=options.force, outputs=[report]):
        found = findings_from_table(pq.read_table(out_dir / "findings.parquet"))
        return InspectResult(found, out_dir, report, refs, skipped, (prev or {}).get("run_id"), tracker.uri,
                             skipped_unchanged=True, not_judged=_stored_not_judged(out_dir))  # fmt: skip

    found: list[Finding] = []
    scored_n: dict[str, int] = {}
    meta: dict[str, Any] = {"models": {}}
    tenant_map = captured_tenant_map(catalog.path(ws, catalog.PACKETS))  # as the packets were captured
    thresholds: dict[str, float | None] = {}
    if "compromise" in refs:
        tw, tw_manifest = read_feature_table(ws, catalog.TENANT_WINDOWS)
        model = tracker.load_model(refs["compromise"].uri)
        before = score_windows(tw, model, options.threshold_scale, "features/tenant_windows")
        scored, unjudged = require_support(before)
        meta["unjudged_scopes"], meta["min_connections"] = unjudged, MIN_CONNECTIONS
        flows = FlowIndex(catalog.path(ws, catalog.FLOWS)) if (scored["flag"] == 1).any() else None
        compromise = compromise_findings(scored, flows, refs["compromise"])
        spec = tw_manifest.get("config", {})
        meta["not_judged"] = [
            j.as_json()
            for j in compromise_not_judged(
                ws, before, scored, compromise, float(spec.get("window_s", 60.0)), float(spec.get("hop_s", 10.0))
            )
        ]
        found += compromise
        thresholds["compromise"] = float(scored["threshold"].iloc[0]) if len(scored) else None
        scored_n["compromise"] = len(scored)
        meta["tenant_windows"] = len(scored)
        _span(meta, scored)
    if "faults" in refs:
        fw, _ = read_feature_table(ws, catalog.FAULT_WINDOWS)
        model = tracker.load_model(refs["faults"].uri)
        scored = score_windows(fw, model, options.threshold_scale, "features/fault_windows")
        found += fault_findings(scored, vm_hosts(tenant_map), refs["faults"], routers=router_hosts(tenant_map))
        thresholds["faults"] = float(scored["threshold"].iloc[0]) if len(scored) else None
        scored_n["faults"] = len(scored)
        meta["fault_windows"] = len(scored)
        _span(meta, scored)
    arp = read_arp(str(ws))
    found += arp_findings(arp, tenant_map.ports_by_mac())
    if arp is not None and len(arp):
        meta["arp_frames"] = len(arp)
        first, last = int(arp["ts_ns"].min()), int(arp["ts_ns"].max())
        meta["capture_start_ns"] = min(meta.get("capture_start_ns", first), first)
        meta["capture_end_ns"] = max(meta.get("capture_end_ns", last), last)
    for kind, ref in refs.items():
        meta["models"][kind] = {"uri": ref.uri, "name": ref.name, "version": ref.version, "run_id": ref.run_id,
                                "experiment_id": ref.experiment_id, "threshold": thresholds.get(kind)}  # fmt: skip
    pkt = catalog.manifest(ws, catalog.PACKETS) or {}
    flw = catalog.manifest(ws, catalog.FLOWS) or {}
    meta.update(
        generated_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        workspace=str(ws),
        packets=pkt.get("rows"),
        flows=flw.get("rows"),
        tracking_uri=tracker.uri,
        mlflow_ui_url=options.mlflow_ui_url or remote_ui_url(tracker.uri) or DEFAULT_UI_URL,
        threshold_scale=options.threshold_scale,
        pseudonymized=options.pseudonym_key is not None,
        skipped_kinds=skipped,
        netsentry_version=__version__,
    )
    if options.pseudonym_key is not None:
        found, meta = _pseudonymize(found, meta, options.pseudonym_key)

    result = InspectResult(found, out_dir, report, refs, skipped, None, tracker.uri, scored_n,
                           not_judged=list(meta.get("not_judged", [])))  # fmt: skip
    result.run_id = _log_run(tracker, result, meta) if options.log_run else None
    _write(result, meta, inputs, config)
    return result


def _stored_not_judged(out_dir: Path) -> list[dict[str, Any]]:
    """The ``not_judged`` list of an up-to-date findings.json (empty when absent)."""
    try:
        return list(json.loads((out_dir / "findings.json").read_text()).get("not_judged", []))
    except (OSError, ValueError):
        return []


def _span(meta: dict[str, Any], scored: pd.DataFrame) -> None:
    if scored.empty:
        return
    start = int(scored["window_start_ns"].min())
    end = int((scored["window_start_ns"] + scored["window_s"] * 1e9).max())
    meta["capture_start_ns"] = min(meta.get("capture_start_ns", start), start)
    meta["capture_end_ns"] = max(meta.get("capture_end_ns", end), end)


def _key_digest(key: bytes | None) -> str | None:
    return None if key is None else hashlib.sha256(b"netsentry-pseudonym|" + key).hexdigest()[:16]


def _pseudonymize(found: list[Finding], meta: dict[str, Any], key: bytes) -> tuple[list[Finding], dict[str, Any]]:
    from netsentry.pipeline.core.pseudonym import Pseudonymizer

    p = Pseudonymizer(key)
    out = []
    for f in found:
        g = Finding(**{k: (p.scrub(v) if isinstance(v, str) else v) for k, v in f.__dict__.items() if k != "evidence"},
                    evidence=p.json_value(f.evidence))  # fmt: skip
        out.append(g)
    return out, p.json_value(meta)


def _render(found: list[Finding], meta: dict[str, Any]) -> str:
    from netsentry.pipeline.report import render_report

    return render_report(found, meta)


def _write(result: InspectResult, meta: dict[str, Any], inputs: dict[str, Any], config: dict[str, Any]) -> None:
    with atomic_dir(result.findings_dir) as tmp:
        pq.write_table(findings_table(result.findings), tmp / "findings.parquet")
        (tmp / "findings.json").write_text(findings_document(result.findings, meta))
        write_manifest(tmp, {
            "stage": "inspect", "inputs": inputs, "config": config, "rows": len(result.findings),
            "run_id": result.run_id, "netsentry_version": __version__,
        })  # fmt: skip
    atomic_write_text(result.report, _render(result.findings, meta))


def _log_run(tracker: Tracker, result: InspectResult, meta: dict[str, Any]) -> str:
    """An MLflow run in ``netsentry-inspections`` with the findings and report as artifacts (``meta`` gets its ids)."""
    from netsentry.pipeline.core import tracking

    tags = {f"netsentry.{k}_model": f"{r.name or r.uri} v{r.version}" for k, r in result.models.items()}
    tags.update({f"netsentry.{k}_model_run_id": r.run_id for k, r in result.models.items() if r.run_id})
    with tracker.run("inspect", run_name=f"inspect {Path(meta['workspace']).name}", tags=tags) as run:
        tracking.log_params({
            "workspace": meta["workspace"], "threshold_scale": meta["threshold_scale"],
            "pseudonymized": meta["pseudonymized"],
            **{f"{k}_model_uri": r.uri for k, r in result.models.items()},
            **{f"{k}_model_version": r.version for k, r in result.models.items()},
        })  # fmt: skip
        metrics: dict[str, float] = {"findings": float(len(result.findings))}
        for key, n in result.counts.items():
            metrics[f"findings_{key.replace(':', '_')}"] = float(n)
        for kind, n in result.windows_scored.items():
            metrics[f"{kind}_windows_scored"] = float(n)
        tracking.log_metrics(metrics)
        meta.update(inspection_run_id=run.info.run_id, inspection_experiment_id=run.info.experiment_id)
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            pq.write_table(findings_table(result.findings), d / "findings.parquet")
            (d / "findings.json").write_text(findings_document(result.findings, meta))
            (d / REPORT).write_text(_render(result.findings, meta))
            tracking.log_artifacts(d)
        return str(run.info.run_id)
