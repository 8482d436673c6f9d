"""``netsentry run``: every stage in order from one resolved config, each skipped when it is up to date.

capture, flows, features and inspect keep manifests of their inputs and config and skip themselves; training
is recorded in ``WORKSPACE/train/<kind>.json`` (the features it saw, its options, the tracking store and the
version it registered), so an unchanged workspace does not register a new version on every run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.config import Settings
from netsentry.pipeline.core.errors import InputNotFoundError
from netsentry.pipeline.core.io import atomic_write_text, manifest_digest
from netsentry.pipeline.core.stage_options import (
    capture_options,
    flow_config,
    inspect_options,
    train_options,
    window_spec,
)
from netsentry.pipeline.core.tracking import resolve_tracking_uri


@dataclass
class StageReport:
    """One stage of a run: ``ran`` or ``up to date`` (or ``skipped`` with the reason), a line of detail."""

    stage: str
    status: str
    detail: str = ""
    seconds: float = 0.0
    result: Any = None


@dataclass
class RunReport:
    """Every stage of a run, in order."""

    stages: list[StageReport] = field(default_factory=list)

    @property
    def inspect(self) -> Any:
        """The inspect stage's result (None when it did not run)."""
        return next((s.result for s in self.stages if s.stage == "inspect"), None)


Progress = Callable[[str], None]


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    res = fn()
    return res, time.perf_counter() - t


def run_pipeline(
    settings: Settings,
    inputs: Sequence[str | Path] = (),
    *,
    force: bool = False,
    on_stage: Progress | None = None,
) -> RunReport:
    """capture → flows → features → train (per kind, when due) → inspect, on ``settings.workspace``."""
    from netsentry.pipeline.capture.stage import run_capture
    from netsentry.pipeline.features.stage import run_features
    from netsentry.pipeline.flows.stage import run_flows

    ws = Path(settings.workspace)
    report = RunReport()
    say = on_stage or (lambda _s: None)
    sources = list(inputs) or list(settings.run.inputs)

    say("capture")
    if sources:
        opts = capture_options(settings, force=force)
        s, sec = _timed(lambda: run_capture(sources, ws, opts))
        status = "up to date" if s.skipped_unchanged else "ran"
        arp = f", {s.arp:,} ARP frames" if s.arp else ""
        report.stages.append(StageReport("capture", status, f"{s.packets:,} packets{arp}", sec, s))
    elif catalog.manifest(ws, catalog.PACKETS):
        report.stages.append(StageReport("capture", "skipped", "no inputs given; using the workspace's packets"))
    else:
        raise InputNotFoundError("no captures to read: give INPUT files or set run.inputs in the config",
                                 path=str(ws))  # fmt: skip

    say("flows")
    fc = flow_config(settings)
    s, sec = _timed(lambda: run_flows(ws, fc, batch_packets=settings.flows.batch_packets, force=force))
    report.stages.append(StageReport("flows", "up to date" if s.skipped_unchanged else "ran", f"{s.flows:,} flows",
                                     sec, s))  # fmt: skip

    say("features")
    fs = settings.features
    spec = window_spec(settings)
    s, sec = _timed(lambda: run_features(ws, labels=fs.labels, spec=spec,
                                                    fault_window_s=fs.fault_window_s, force=force))  # fmt: skip
    report.stages.append(
        StageReport(
            "features",
            "up to date" if s.skipped_unchanged else "ran",
            f"{s.tenant_rows:,} tenant windows, {s.fault_rows:,} fault windows",
            sec,
            s,
        )
    )

    for kind in settings.run.kinds:
        say(f"train {kind}")
        report.stages.append(_train(settings, kind, force))

    if settings.run.inspect:
        from netsentry.pipeline.inspect import run_inspect

        say("inspect")
        opts = inspect_options(settings, force)
        res, sec = _timed(lambda: run_inspect(ws, opts, tracking_uri=settings.train.tracking_uri))
        status = "up to date" if res.skipped_unchanged else "ran"
        report.stages.append(StageReport("inspect", status, f"{len(res.findings):,} findings", sec, res))
    return report


def _train(settings: Settings, kind: str, force: bool) -> StageReport:
    from netsentry.pipeline.train.stage import run_train

    ws = Path(settings.workspace)
    policy = settings.run.train
    if policy == "never" or (policy == "auto" and settings.features.labels is None):
        why = "run.train is never" if policy == "never" else "no labels configured (features.labels)"
        return StageReport(f"train {kind}", "skipped", why)
    ts = settings.train
    options = train_options(settings, kind)
    record_path = catalog.train_record_path(ws, kind)
    key = {
        "features": manifest_digest(catalog.manifest(ws, catalog.FEATURE_TABLES[kind])),
        "options": asdict(options),
        "tracking_uri": resolve_tracking_uri(ts.tracking_uri, ws),
    }
    prev = catalog.read_train_record(ws, kind)
    if prev is not None and catalog.up_to_date([prev], {"key": key}, force=force):
        return StageReport(f"train {kind}", "up to date", f"{prev['name']} v{prev['version']} ({prev['model']})")
    res, sec = _timed(lambda: run_train(ws, options, tracking_uri=ts.tracking_uri))
    if settings.run.promote == "always" and "champion" not in res.aliases:
        from netsentry.pipeline.core.tracking import Tracker

        Tracker(ws, ts.tracking_uri).promote(kind, res.version, "netsentry run with run.promote: always")
        res.aliases = [*res.aliases, "champion"]
    record = {"key": key, "name": res.registered_name, "version": res.version, "run_id": res.run_id,
              "model": res.model_name, "aliases": res.aliases, "metrics": res.metrics}  # fmt: skip
    record_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record_path, json.dumps(record, indent=2, sort_keys=True, default=float) + "\n")
    auc = res.metrics.get("roc_auc")
    detail = f"{res.registered_name} v{res.version} ({res.model_name}, aliases {', '.join(res.aliases)}"
    detail += f", ROC-AUC {auc:.3f})" if auc is not None else ")"
    return StageReport(f"train {kind}", "ran", detail, sec, res)
