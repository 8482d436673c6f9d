"""``netsentry inspect`` and ``netsentry run`` end to end: models trained on the simulated ``mixed`` history score
the ``demo`` scenario (one compromised VM, one lossy uplink) and real captures from ../shared/data."""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path

import mlflow
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from netsentry.pipeline.cli import app
from netsentry.pipeline.core.config import load_settings
from netsentry.pipeline.core.schemas import ip_text
from netsentry.pipeline.inspect import InspectOptions, run_inspect
from netsentry.pipeline.inspect.findings import FINDINGS
from netsentry.pipeline.runner import run_pipeline
from netsentry.pipeline.simulate.stage import simulate_to_dir
from netsentry.pipeline.train.stage import TrainResult
from tests.conftest import ATTACKERS, BENIGN, FAULT_FREE, FAULTY, ROOT, workspace_of

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mixed")]
runner = CliRunner()


@pytest.fixture(scope="module")
def demo_sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("demo") / "sim"
    simulate_to_dir(ROOT / "configs/scenarios/demo.yaml", d, snaplen=128)
    return d


@pytest.fixture(scope="module")
def today(demo_sim: Path) -> Path:
    """The demo scenario's captures through capture → flows → features, without labels."""
    return workspace_of(sorted(demo_sim.glob("*.pcap")), demo_sim.parent / "ws", demo_sim / "tenants.yaml")


@pytest.fixture(scope="module")
def uri(trained: dict[str, TrainResult]) -> str:
    return trained["compromise"].tracking_uri


def overlaps(f: object, start: str, end: str) -> bool:
    s, e = pd.Timestamp(start).value, pd.Timestamp(end).value
    return f.start_ns < e and f.end_ns > s  # type: ignore[attr-defined]


def test_demo_findings_are_the_injected_compromise_and_fault(today: Path, uri: str) -> None:
    res = run_inspect(today, InspectOptions(force=True), tracking_uri=uri)
    labels = pd.read_csv(today.parent / "sim" / "labels.csv")
    comp, fault = labels.iloc[0], labels.iloc[1]
    high = [f for f in res.findings if f.severity == "high"]
    assert len(high) == 2, [f.summary for f in res.findings]
    c = next(f for f in high if f.kind == "compromise")
    assert (c.scope, c.ip, c.tenant, c.vm) == ("acme/acme-web-1", "10.1.1.10", "acme", "acme-web-1")
    assert overlaps(c, comp["start"], comp["end"])
    assert c.evidence["ports"][0]["port"] == 22 and c.evidence["ports"][0]["flows"] >= 200
    assert c.evidence["remotes"][0]["ip"] == comp["detail"].split("peer=")[1].split()[0]
    assert c.evidence["counts"]["flows_out"] > 0 and c.evidence["summary_features"]
    assert "tcp/22" in c.summary and "10.1.1.10" in c.summary
    f = next(f for f in high if f.kind == "fault")
    assert (f.scope_type, f.scope, f.type) == ("host", fault["scope"], "loss")
    assert overlaps(f, fault["start"], fault["end"])
    assert f.evidence["magnitude"]["retransmissions"] > 0 and "retransmissions" in f.summary
    assert all(f.model_version for f in res.findings)

    # the outputs: findings table and document agree, the report shows them, an MLflow run holds them
    table = pq.read_table(res.findings_dir / "findings.parquet")
    assert table.schema.equals(FINDINGS) and table.num_rows == len(res.findings)
    doc = json.loads((res.findings_dir / "findings.json").read_text())
    assert [d["finding_id"] for d in doc["findings"]] == table.column("finding_id").to_pylist()
    assert doc["meta"]["models"]["compromise"]["version"] == res.models["compromise"].version
    html = res.report.read_text()
    assert escape(c.summary.split(":")[0]) in html and "host2" in html and "<script src" not in html
    client = mlflow.MlflowClient(uri)
    run = client.get_run(res.run_id)
    assert run.data.params["compromise_model_version"] == res.models["compromise"].version
    assert run.data.metrics["findings"] == len(res.findings)
    arts = {a.path for a in client.list_artifacts(res.run_id)}
    assert {"findings.json", "findings.parquet", "report.html"} <= arts
    assert client.get_experiment(run.info.experiment_id).name == "netsentry-inspections"


def test_cli_exit_codes_json_and_up_to_date(today: Path, uri: str) -> None:
    r = runner.invoke(app, ["inspect", "-w", str(today), "--tracking-uri", uri, "--json", "--force"])
    assert r.exit_code == 3, r.output
    doc = json.loads(r.stdout)
    assert {f["severity"] for f in doc["findings"]} >= {"high"} and doc["meta"]["report"].endswith("report.html")
    again = runner.invoke(app, ["inspect", "-w", str(today), "--tracking-uri", uri])
    assert again.exit_code == 3 and "up to date" in again.output and "acme-web-1" in again.output
    # a fifth of the false positives: 0.2 % of ~3,000 benign calibration windows. Finer asks for the few top ones,
    # which one benign behaviour seen once in training sets: out of fold, the sources of initech-app-1's microburst
    # score 5.5, above the brute force itself (docs/experiments.md, 2026-12-07 c)
    strict = runner.invoke(app, ["inspect", "-w", str(today), "--tracking-uri", uri, "--json",
                                 "--threshold-scale", "5"])  # fmt: skip
    sure = json.loads(strict.stdout)["findings"]
    assert strict.exit_code == 3 and len(sure) < len(doc["findings"])  # fewer, surer findings
    assert ("compromise", "acme/acme-web-1", "high") in {(f["kind"], f["scope"], f["severity"]) for f in sure}
    bad = runner.invoke(app, ["inspect", "-w", str(today), "--tracking-uri", uri,
                              "--compromise-model", "models:/netsentry-compromise@nope"])  # fmt: skip
    assert bad.exit_code == 8 and "netsentry-compromise@nope" in bad.output
    none = runner.invoke(app, ["inspect", "-w", str(today / "nowhere"), "--tracking-uri", uri])
    assert none.exit_code == 2 and "features" in none.output


def test_pseudonymized_outputs_hold_no_input_address_and_the_same_verdicts(
    today: Path, uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = run_inspect(today, InspectOptions(force=True, log_run=False), tracking_uri=uri)
    monkeypatch.setenv("NETSENTRY_PSEUDONYM_KEY", "correct horse battery staple")
    r = runner.invoke(app, ["inspect", "-w", str(today), "--tracking-uri", uri, "--pseudonymize"])
    assert r.exit_code == 3, r.output
    packets = pq.read_table(today / "packets", columns=["src_ip", "dst_ip"])
    addresses = set(ip_text(packets["src_ip"])) | set(ip_text(packets["dst_ip"]))
    assert "10.1.1.10" in addresses and len(addresses) > 100
    outputs = {
        "findings.json": (today / "findings" / "findings.json").read_text(),
        "findings.parquet": pq.read_table(today / "findings" / "findings.parquet").to_pandas().to_json(),
        "report.html": (today / "report.html").read_text(),
        "terminal": r.output,
    }
    token = re.compile(r"(?<![\w.:])[0-9a-fA-F:.]*[.:][0-9a-fA-F:.]*(?![\w])")
    for name, text in outputs.items():
        leaked = {t.rstrip(".") for t in token.findall(text)} & addresses
        assert not leaked, f"{name} shows input addresses {sorted(leaked)[:5]}"
    masked = pq.read_table(today / "findings" / "findings.parquet").to_pylist()

    def verdict(f: dict) -> tuple:
        return f["kind"], f["type"], f["scope"], f["severity"], f["start_ns"], f["end_ns"], f["windows"]

    assert [verdict(f) for f in masked] == [verdict(f.__dict__) for f in plain.findings]
    assert all(m["ip"] != p.ip for m, p in zip(masked, plain.findings, strict=True) if p.ip)


def test_run_skips_what_is_up_to_date(demo_sim: Path, tmp_path: Path, uri: str) -> None:
    settings = load_settings(None, {
        "workspace": tmp_path / "ws", "capture": {"tenants": demo_sim / "tenants.yaml"},
        "train": {"tracking_uri": uri}, "run": {"inputs": [str(demo_sim)], "train": "never"},
    })  # fmt: skip
    first = run_pipeline(settings)
    assert [s.status for s in first.stages] == ["ran", "ran", "ran", "skipped", "skipped", "ran"]
    assert any(f.severity == "high" for f in first.inspect.findings)
    second = run_pipeline(settings)
    assert [s.status for s in second.stages] == ["up to date"] * 3 + ["skipped"] * 2 + ["up to date"]
    assert [f.finding_id for f in second.inspect.findings] == [f.finding_id for f in first.inspect.findings]


def test_run_trains_once_per_unchanged_workspace(demo_sim: Path, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = load_settings(None, {
        "workspace": tmp_path / "ws", "capture": {"tenants": demo_sim / "tenants.yaml"},
        "features": {"labels": demo_sim / "labels.csv"},
        "train": {"tracking_uri": store, "model": "iforest"},
        "run": {"inputs": [str(demo_sim)], "kinds": ["compromise"], "inspect": False},
    })  # fmt: skip
    first = run_pipeline(settings)
    assert first.stages[-1].stage == "train compromise" and first.stages[-1].status == "ran"
    assert "v1" in first.stages[-1].detail
    second = run_pipeline(settings)
    assert second.stages[-1].status == "up to date" and "v1" in second.stages[-1].detail
    assert len(mlflow.MlflowClient(store).search_model_versions("name='netsentry-compromise'")) == 1
    forced = run_pipeline(settings, force=True)  # a new version: challenger only, the champion stays
    assert "v2" in forced.stages[-1].detail and "champion" not in forced.stages[-1].detail
    client = mlflow.MlflowClient(store)
    assert str(client.get_model_version_by_alias("netsentry-compromise", "champion").version) == "1"
    always = settings.model_copy(update={"run": settings.run.model_copy(update={"promote": "always"})})
    promoted = run_pipeline(always, force=True)
    assert "v3" in promoted.stages[-1].detail and "champion" in promoted.stages[-1].detail
    assert str(client.get_model_version_by_alias("netsentry-compromise", "champion").version) == "3"


@pytest.mark.shared
def test_inspect_flags_the_attackers_in_real_captures_and_not_the_benign_traces(real: dict, uri: str) -> None:
    """Also the exit codes' other half: a benign trace with nothing flagged exits 0."""

    def findings(rel: str) -> list:
        return run_inspect(real[rel], InspectOptions(log_run=False), tracking_uri=uri).findings

    for rel, attacker in ATTACKERS.items():
        flagged = {ip for f in findings(rel) if f.kind == "compromise" for ip in f.ip.split(";")}
        assert attacker in flagged, f"{rel}: {attacker} not among {flagged}"
    for rel in BENIGN:
        comp = [f.summary for f in findings(rel) if f.kind == "compromise"]
        assert not comp, f"{rel}: {comp}"
    for rel in FAULTY:
        faults = [f for f in findings(rel) if f.kind == "fault"]
        assert faults and all(f.evidence["magnitude"]["retransmissions"] > 0 for f in faults), rel
        assert {f.type for f in faults} == {"loss"}, [f.summary for f in faults]
    for rel in FAULT_FREE:
        assert not [f for f in findings(rel) if f.kind == "fault"], rel
    quiet = runner.invoke(app, ["inspect", "-w", str(real["zeek/traces/http/bro.org.pcap"]), "--tracking-uri", uri])
    assert quiet.exit_code == 0 and "nothing flagged" in quiet.output, quiet.output
