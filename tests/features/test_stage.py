"""The features stage through the CLI on the simulated demo cloud: tables, labels, reruns, then training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from netsentry.pipeline.cli import app
from netsentry.pipeline.core.io import read_manifest
from netsentry.pipeline.features.faults.catalogue import FAULT_FEATURES
from netsentry.pipeline.features.tenant.catalogue import TENANT_FEATURES
from tests.paths import REPO as ROOT

runner = CliRunner()


def cli(*args: str) -> str:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("stage")
    cli(
        "simulate", "--scenario", str(ROOT / "configs/scenarios/demo.yaml"), "--out", str(d / "sim"), "--snaplen", "128"
    )
    ws = d / "ws"
    cli("capture", str(d / "sim" / "vm.pcap"), "-w", str(ws),
        "--tenants", str(d / "sim" / "tenants.yaml"))  # fmt: skip
    cli("flows", "-w", str(ws))
    return d


def test_features_writes_both_tables_with_labels(demo: Path) -> None:
    ws = demo / "ws"
    out = cli("features", "-w", str(ws), "--labels", str(demo / "sim" / "labels.csv"), "--window", "20s", "--hop", "5s")
    assert "tenant windows" in out and "ssh_bruteforce" in out and "loss_burst" in out
    tw = pd.read_parquet(ws / "features" / "tenant_windows")
    fw = pd.read_parquet(ws / "features" / "fault_windows")
    assert set(TENANT_FEATURES) <= set(tw.columns) and set(FAULT_FEATURES) <= set(fw.columns)
    assert (tw["window_s"] == 20).all() and tw["window_start_ns"].diff().dropna().isin([0, 5 * 10**9]).all()
    attacked = tw[tw["label"] == 1]
    assert set(attacked["vm"]) == {"acme-web-1"} and set(attacked["label_scenario"]) == {"ssh_bruteforce"}
    faulty = fw[fw["label"] == 1]
    assert set(faulty["label_scenario"]) == {"loss_burst"}
    assert "host2" in set(faulty.loc[faulty["scope_type"] == "host", "scope"])
    m = read_manifest(ws / "features" / "tenant_windows")
    assert m["config"] == {"window_s": 20.0, "hop_s": 5.0, "fault_window_s": 1.0} and m["rows"] == len(tw)
    again = cli("features", "-w", str(ws), "--labels", str(demo / "sim" / "labels.csv"), "--window", "20s",
                "--hop", "5s")  # fmt: skip
    assert "up to date" in again


def test_features_errors_are_one_line(demo: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["features", "-w", str(tmp_path)])
    assert r.exit_code == 2 and "flows" in r.output
    r = runner.invoke(app, ["features", "-w", str(demo / "ws"), "--window", "soon"])
    assert r.exit_code == 2 and "--window" in r.output
    r = runner.invoke(app, ["features", "-w", str(demo / "ws"), "--labels", str(tmp_path / "none.csv")])
    assert r.exit_code == 2 and "none.csv" in r.output


def test_train_both_kinds_after_features(demo: Path) -> None:
    ws = demo / "ws"
    cli("features", "-w", str(ws), "--labels", str(demo / "sim" / "labels.csv"), "--window", "20s", "--hop", "5s")
    out = cli("train", "-w", str(ws), "--kind", "compromise", "--test-fraction", "0.35")
    assert "netsentry-compromise" in out and "champion" in out
    out = cli("train", "-w", str(ws), "--kind", "faults", "--model", "iforest")
    assert "netsentry-faults" in out and "champion" in out
