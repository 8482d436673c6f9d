"""Each stage's options from the resolved settings: the one place that maps config sections onto the stages'
arguments (used by the stage commands, ``netsentry run`` and the retraining job)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netsentry.pipeline.core.config import Settings


def capture_options(settings: Settings, *, tenants: Path | None = None, **over: Any) -> Any:
    """:class:`~netsentry.pipeline.capture.stage.CaptureOptions` from ``capture`` (``tenants`` when the config has
    none)."""
    from netsentry.pipeline.capture.stage import CaptureOptions

    c = settings.capture
    return CaptureOptions(engine=c.engine, chunk_bytes=c.chunk_mb << 20, tenants=c.tenants or tenants, **over)


def flow_config(settings: Settings) -> Any:
    """:class:`~netsentry.pipeline.flows.assemble.FlowConfig` from ``flows`` (``flows.batch_packets`` goes to
    ``run_flows``)."""
    from netsentry.pipeline.flows.assemble import FlowConfig

    return FlowConfig(settings.flows.idle_timeout_s, settings.flows.active_timeout_s)


def window_spec(settings: Settings) -> Any:
    """:class:`~netsentry.pipeline.features.tenant.windows.WindowSpec` from ``features`` (a hop is at most a window)."""
    from netsentry.pipeline.features.tenant.windows import WindowSpec

    fs = settings.features
    return WindowSpec(fs.window_s, min(fs.hop_s, fs.window_s))


def train_options(settings: Settings, kind: str) -> Any:
    """:class:`~netsentry.pipeline.train.options.TrainOptions` for ``kind`` from ``train``."""
    from netsentry.pipeline.train.options import TrainOptions

    ts = settings.train
    return TrainOptions(kind, ts.model, ts.target_fpr, ts.test_fraction, ts.seed, ts.device)


def inspect_options(settings: Settings, force: bool = False) -> Any:
    """:class:`~netsentry.pipeline.inspect.InspectOptions` from ``inspect`` (loads the pseudonym key when asked)."""
    from netsentry.pipeline.inspect import InspectOptions

    ins = settings.inspect
    key = None
    if ins.pseudonymize or ins.pseudonym_key_file is not None:
        from netsentry.pipeline.core.pseudonym import load_key

        key = load_key(ins.pseudonym_key_file)
    return InspectOptions(ins.compromise_model, ins.fault_model, ins.threshold_scale, key,
                          mlflow_ui_url=ins.ui_url, force=force)  # fmt: skip
