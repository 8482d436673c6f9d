"""Training into a real MLflow store (SQLite): runs, metrics, plots, registered versions, aliases, pyfunc."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from netsentry.pipeline.capture.stage import CaptureOptions, run_capture
from netsentry.pipeline.cli import app
from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.errors import ConfigError, NoUsableDataError
from netsentry.pipeline.features.labels import label_tenant_windows, read_labels
from netsentry.pipeline.features.stage import _write
from netsentry.pipeline.features.tenant.windows import WindowSpec, tenant_windows
from netsentry.pipeline.flows.stage import run_flows
from netsentry.pipeline.simulate.stage import simulate_to_dir
from netsentry.pipeline.train.evaluate import fit_and_evaluate, time_split
from netsentry.pipeline.train.options import TrainOptions
from netsentry.pipeline.train.stage import run_train
from tests.paths import REPO as ROOT


@pytest.fixture(scope="module")
def demo_windows(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Labelled tenant windows (20 s every 5 s) of the simulated demo cloud."""
    d = tmp_path_factory.mktemp("demo")
    simulate_to_dir(ROOT / "configs/scenarios/demo.yaml", d / "sim")
    ws = d / "ws"
    run_capture([d / "sim" / "vm.pcap"], ws, CaptureOptions(tenants=d / "sim" / "tenants.yaml"))
    run_flows(ws)
    tw = tenant_windows(pq.read_table(ws / "flows"), WindowSpec(20, 5))
    return label_tenant_windows(tw, read_labels(d / "sim" / "labels.csv"), hop_s=5)


def workspace_with(tmp_path: Path, windows: pd.DataFrame) -> Path:
    ws = tmp_path / "ws"
    _write(windows, catalog.path(ws, catalog.TENANT_WINDOWS), {"inputs": {}, "config": {"window_s": 20, "hop_s": 5}})
    return ws


def test_time_split_keeps_training_windows_out_of_the_test_period() -> None:
    starts = np.arange(10) * 5
    train, test = time_split(starts, np.full(10, 20), 0.4)
    assert list(np.flatnonzero(test)) == [6, 7, 8, 9]  # windows starting at or after 30
    assert list(np.flatnonzero(train)) == [0, 1, 2]  # windows ending by 30
    with pytest.raises(NoUsableDataError):
        time_split(np.array([0, 0, 5]), np.array([20, 20, 20]), 0.4)


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="--kind"):
        TrainOptions(kind="nope")
    with pytest.raises(ConfigError, match="--model"):
        TrainOptions(model="svm")


def test_supervised_detector_finds_the_planted_brute_force(demo_windows: pd.DataFrame) -> None:
    """Demo: ssh brute force by acme-web-1 from 20 s to 60 s; the later windows (test) hold part of it."""
    out = fit_and_evaluate(demo_windows, TrainOptions(kind="compromise", model="boosted", test_fraction=0.35))
    ev = out.evaluation
    assert ev is not None and ev.metrics["test_positives"] > 0
    assert ev.metrics["roc_auc"] >= 0.99
    assert ev.recall_by_scenario["ssh_bruteforce"] >= 0.9
    again = fit_and_evaluate(demo_windows, TrainOptions(kind="compromise", model="boosted", test_fraction=0.35))
    assert np.array_equal(again.evaluation.scores, ev.scores)  # seeded: same model


def test_train_logs_and_registers_in_mlflow(tmp_path: Path, demo_windows: pd.DataFrame) -> None:
    from mlflow.tracking import MlflowClient

    ws = workspace_with(tmp_path, demo_windows)
    first = run_train(ws, TrainOptions(kind="compromise", model="boosted", test_fraction=0.35))
    assert first.tracking_uri == f"sqlite:///{ws.resolve() / 'mlflow.db'}"
    assert first.version == "1" and set(first.aliases) == {"challenger", "champion"}
    second = run_train(ws, TrainOptions(kind="compromise", model="iforest", test_fraction=0.35))
    assert second.version == "2" and second.aliases == ["challenger"]

    client = MlflowClient(first.tracking_uri)
    assert str(client.get_model_version_by_alias("netsentry-compromise", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("netsentry-compromise", "challenger").version) == "2"
    exp = client.get_experiment_by_name("netsentry-compromise")
    assert exp.artifact_location.startswith((ws.resolve() / "mlartifacts").as_uri())
    run = client.get_run(first.run_id)
    for m in ("roc_auc", "pr_auc", "precision", "recall", "f1", "fpr", "threshold", "recall.ssh_bruteforce"):
        assert m in run.data.metrics, m
    assert run.data.params["model"] == "boosted" and run.data.params["split"] == "time"
    assert run.data.tags["netsentry.dataset_sha256"] and run.data.tags["netsentry.git_revision"]
    arts = {a.path for a in client.list_artifacts(first.run_id)}
    assert {"roc.png", "pr.png", "score_distribution.png", "features.json", "threshold.json"} <= arts
    thr = json.loads(Path(client.download_artifacts(first.run_id, "threshold.json", str(tmp_path))).read_text())
    assert thr["target_fpr"] == 0.01 and thr["threshold"] == pytest.approx(first.threshold)

    import mlflow

    mlflow.set_tracking_uri(first.tracking_uri)
    mlflow.set_registry_uri(first.tracking_uri)  # another test in this worker may have set its own
    model = mlflow.pyfunc.load_model("models:/netsentry-compromise@champion")
    assert model.metadata.signature is not None
    pred = model.predict(demo_windows)
    assert list(pred.columns) == ["score", "flag", "threshold", "benign_tail"] and len(pred) == len(demo_windows)
    assert pred["benign_tail"].between(0, 1).all()
    flagged = set(demo_windows.loc[pred["flag"].to_numpy() == 1, "vm"])
    assert "acme-web-1" in flagged


def test_cli_train_prints_metrics_and_registry(tmp_path: Path, demo_windows: pd.DataFrame) -> None:
    ws = workspace_with(tmp_path, demo_windows)
    r = CliRunner().invoke(app, ["train", "-w", str(ws), "--kind", "compromise", "--test-fraction", "0.35"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())  # the console wraps long lines (the workspace path) at its width
    assert "roc_auc" in text and "version 1" in text and "champion" in text
    r = CliRunner().invoke(app, ["train", "-w", str(tmp_path / "empty"), "--kind", "compromise"])
    assert r.exit_code == 2 and "features" in r.output
    r = CliRunner().invoke(app, ["train", "-w", str(ws), "--kind", "compromise", "--model", "boosted",
                                 "--tracking-uri", "http://127.0.0.1:9/"])  # fmt: skip
    assert r.exit_code == 8 and "MLflow" in r.output


def test_history_free_copies_sit_next_to_their_originals() -> None:
    from netsentry.pipeline.train.transplants import without_history_copies

    X = pd.DataFrame({"flows_in_vs_baseline": [5.0, 7.0], "new_ports_out": [3.0, 0.0], "failed_ratio_out": [0.5, 0.1]})
    Xa, ya = without_history_copies(X, np.array([1, 0]))
    assert list(ya) == [1, 1, 0, 0]
    assert Xa["flows_in_vs_baseline"].tolist() == [5.0, 1.0, 7.0, 1.0]
    assert Xa["new_ports_out"].tolist() == [3.0, 0.0, 0.0, 0.0]
    assert Xa["failed_ratio_out"].tolist() == [0.5, 0.5, 0.1, 0.1]
