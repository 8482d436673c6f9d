"""Shared, expensive fixtures: the simulated ``mixed`` cloud through every stage and the models trained on it.

Tests that use them carry ``@pytest.mark.xdist_group("mixed")`` so that, with ``pytest -n 2 --dist loadgroup``
(the Makefile's default), one worker builds them once for all of those tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.capture.stage import CaptureOptions, run_capture
from pipeline.features.stage import run_features
from pipeline.flow_stage import run_flows
from pipeline.simulate.run import simulate_to_dir
from pipeline.train import TrainOptions, TrainResult, run_train

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mixed scenario through every stage, with its labels (~5M packets; about a minute)."""
    d = tmp_path_factory.mktemp("mixed")
    simulate_to_dir(ROOT / "configs/scenarios/mixed.yaml", d / "sim", snaplen=128)
    ws = d / "ws"
    pcaps = sorted((d / "sim").glob("*.pcap"))
    run_capture(pcaps, ws, CaptureOptions(tenants=d / "sim" / "tenants.yaml"))
    run_flows(ws)
    run_features(ws, labels=d / "sim" / "labels.csv")
    return ws


@pytest.fixture(scope="session")
def trained(mixed: Path) -> dict[str, TrainResult]:
    """Champions of both kinds, trained on mixed and registered in the workspace's MLflow store."""
    return {kind: run_train(mixed, TrainOptions(kind=kind)) for kind in ("compromise", "faults")}


def workspace_of(captures: list[Path], ws: Path, tenants: Path | None = None) -> Path:
    """Captures through capture → flows → features (no labels) into ``ws``."""
    run_capture(captures, ws, CaptureOptions(tenants=tenants))
    run_flows(ws)
    run_features(ws)
    return ws
