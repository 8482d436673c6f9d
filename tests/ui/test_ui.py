"""The MLflow UI (a real ``mlflow server`` process) on a workspace trained from the simulated demo cloud."""

from __future__ import annotations

import json
import socket
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from netsentry.pipeline.capture.stage import CaptureOptions, run_capture
from netsentry.pipeline.core.errors import InputNotFoundError, UiError
from netsentry.pipeline.core.tracking import resolve_tracking_uri
from netsentry.pipeline.features.stage import run_features
from netsentry.pipeline.features.tenant.windows import WindowSpec
from netsentry.pipeline.flows.stage import run_flows
from netsentry.pipeline.simulate.stage import simulate_to_dir
from netsentry.pipeline.train.options import TrainOptions
from netsentry.pipeline.train.stage import run_train
from netsentry.pipeline.ui import remote_ui_url, start_ui, ui_command
from tests.paths import REPO as ROOT

KINDS = {"compromise": "netsentry-compromise", "faults": "netsentry-faults"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A workspace with one registered model of each kind; the training run id of each kind."""
    d = tmp_path_factory.mktemp("ui")
    simulate_to_dir(ROOT / "configs/scenarios/demo.yaml", d / "sim")
    ws = d / "ws"
    run_capture([d / "sim" / "vm.pcap"], ws, CaptureOptions(tenants=d / "sim" / "tenants.yaml"))
    run_flows(ws)
    run_features(ws, labels=d / "sim" / "labels.csv", spec=WindowSpec(20, 5))
    # iforest: the fastest detector to fit (the UI, not the model, is under test here)
    runs = {kind: run_train(ws, TrainOptions(kind=kind, model="iforest", test_fraction=0.35)).run_id for kind in KINDS}
    return ws, runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    try:
        with socket.create_server(("127.0.0.1", port)):
            return True
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        import psutil
    except ImportError:
        stat = Path(f"/proc/{pid}/stat")
        return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def fetch(url: str, body: dict[str, Any] | None = None, host: str | None = None) -> bytes:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    if host:
        headers["Host"] = host
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=30) as resp:
        return bytes(resp.read())


def api(base: str, path: str, body: dict[str, Any] | None = None, **query: str) -> Any:
    qs = f"?{urllib.parse.urlencode(query)}" if query else ""
    return json.loads(fetch(f"{base}/api/2.0/mlflow/{path}{qs}", body))


def test_ui_shows_experiments_models_and_artifacts_then_stops_its_whole_tree(
    trained: tuple[Path, dict[str, str]],
) -> None:
    ws, runs = trained
    port = free_port()
    server = start_ui(resolve_tracking_uri(None, ws), ws, port=port)
    try:
        base = server.url
        assert base == f"http://127.0.0.1:{port}"
        pids = server.pids()
        assert server.pid in pids and len(pids) <= 3  # one uvicorn worker, no job runner (defaults: 15)

        assert b"<html" in fetch(f"{base}/").lower()  # the UI's page itself

        exps = {e["name"]: e for e in api(base, "experiments/search", max_results="100")["experiments"]}
        assert set(KINDS.values()) <= set(exps)
        for kind, name in KINDS.items():
            found = api(base, "runs/search", {"experiment_ids": [exps[name]["experiment_id"]]})["runs"]
            assert runs[kind] in {r["info"]["run_id"] for r in found}

        models = {m["name"]: m for m in api(base, "registered-models/search")["registered_models"]}
        for name in KINDS.values():
            assert "champion" in {a["alias"] for a in models[name]["aliases"]}
            mv = api(base, "registered-models/alias", name=name, alias="champion")["model_version"]
            assert mv["version"] == "1" and mv["run_id"] in runs.values()

        # run artifacts (file:// locations in the workspace) through the server
        run_id = runs["compromise"]
        listed = {f["path"] for f in api(base, "artifacts/list", run_id=run_id)["files"]}
        assert {"roc.png", "threshold.json"} <= listed
        thr = json.loads(fetch(f"{base}/get-artifact?" + urllib.parse.urlencode({"path": "threshold.json",
                                                                                "run_id": run_id})))  # fmt: skip
        assert thr["target_fpr"] == 0.01
        assert fetch(f"{base}/get-artifact?path=roc.png&run_id={run_id}").startswith(b"\x89PNG")
        # the logged model of the champion (MLflow 3 keeps it apart from the run's artifacts)
        model_id = mv["source"].removeprefix("models:/")
        files = f"{base}/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files"
        mlmodel = fetch(f"{files}?artifact_file_path=MLmodel")
        assert b"python_function" in mlmodel

        # the browser's Host header: both loopback names pass the server's host check
        probe = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
        for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
            assert json.loads(fetch(probe, host=host))["experiments"]
    finally:
        server.stop()
    assert not [p for p in pids if alive(p)], "processes left after stop"
    assert port_is_free(port)
    server.stop()  # idempotent


def test_port_in_use_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "mlflow.db").touch()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(UiError, match=f"port {port} on 127.0.0.1 is already in use.*--port"):
            start_ui(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path, port=port, timeout_s=5)


def test_server_that_exits_early_reports_its_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = "import sys; print('starting'); print('ERROR: cannot open the store', file=sys.stderr); sys.exit(3)"
    monkeypatch.setattr("netsentry.pipeline.ui.ui_command", lambda *a, **k: ([sys.executable, "-c", script], {}))
    (tmp_path / "mlflow.db").touch()
    with pytest.raises(UiError, match=r"exited before it was ready \(exit code 3\): ERROR: cannot open the store"):
        start_ui(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path, port=free_port())


def test_missing_store_and_remote_store(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="train a model first"):
        start_ui(resolve_tracking_uri(None, tmp_path), tmp_path, port=free_port())
    assert not (tmp_path / "mlflow.db").exists()
    assert remote_ui_url("http://mlflow.example:5000/") == "http://mlflow.example:5000"
    assert remote_ui_url("sqlite:///x.db") is None
    with pytest.raises(UiError, match=r"the tracking store is a server: open https://m\.example"):
        ui_command("https://m.example", tmp_path)


def test_ui_command_is_small_and_local(tmp_path: Path) -> None:
    argv, env = ui_command(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path, port=5123)
    assert argv[:4] == [sys.executable, "-m", "mlflow", "server"]
    assert argv[argv.index("--workers") + 1] == "1" and "--serve-artifacts" in argv
    assert argv[argv.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert argv[argv.index("--artifacts-destination") + 1] == (tmp_path.resolve() / "mlartifacts").as_uri()
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "5123"
    assert {"localhost", "localhost:5123", "127.0.0.1:5123"} <= set(argv[argv.index("--allowed-hosts") + 1].split(","))
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false" and env["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_serve_forever_stops_the_server_on_ctrl_c(trained: tuple[Path, dict[str, str]]) -> None:
    import select
    import signal
    import subprocess

    ws, _ = trained
    port = free_port()
    code = (
        "import sys; from pathlib import Path; from netsentry.pipeline.ui import serve_forever; "
        f"serve_forever(sys.argv[1], Path(sys.argv[2]), port={port}, "
        "on_ready=lambda s: print('READY', s.url, *s.pids(), flush=True)); print('STOPPED', flush=True)"
    )
    cmd = [sys.executable, "-c", code, resolve_tracking_uri(None, ws), str(ws)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert select.select([proc.stdout], [], [], 90)[0], "no READY line"
        ready = proc.stdout.readline().split()  # type: ignore[union-attr]
        assert ready[:2] == ["READY", f"http://127.0.0.1:{port}"], ready
        pids = [int(p) for p in ready[2:]]
        assert json.loads(fetch(f"{ready[1]}/api/2.0/mlflow/experiments/search?max_results=1"))["experiments"]
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "STOPPED" in out
    assert pids and not [p for p in pids if alive(p)]
    assert port_is_free(port)
