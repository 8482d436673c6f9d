"""Fault alarms an operator can act on: loss needs minimum evidence, dup-ACKs alone are reordering, and
``--fail-on`` decides which findings make the exit code 3 (crafted captures, a rule model, known answers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from netsentry.pipeline.cli import app
from netsentry.pipeline.core.tracking import Tracker
from netsentry.pipeline.inspect.faults import fault_findings
from netsentry.pipeline.inspect.loss_evidence import loss_evidence, loss_shown, shortfall, wilson_lower
from netsentry.pipeline.train.inputs import feature_columns
from tests.conftest import workspace_of
from tests.inspect.test_faults import MODEL, VM_HOSTS, windows
from tests.pcapbuild import ACK, PSH, SYN, TCP, Record, ethernet, ipv4, tcp, write_pcap

runner = CliRunner()
T0 = 1_767_621_600_000_000_000
MS = 1_000_000
C, S = "10.0.0.1", "10.0.0.2"


def connection(port: int, t_ms: float, *, retransmit: tuple[int, ...] = (), dup_acks: int = 0,
               syn_retry: bool = False) -> list[Record]:  # fmt: skip
    """Client ``port`` → S:80 from ``t_ms``: handshake, six 100-byte data segments (each ACKed), the segments
    numbered in ``retransmit`` sent again 200 ms later, then ``dup_acks`` duplicate ACKs of the last one."""
    out: list[Record] = []
    t = t_ms

    def add(dt: float, src: str, dst: str, sport: int, dport: int, **kw: object) -> None:
        nonlocal t
        t += dt
        seg = tcp(src, dst, sport, dport, **kw)  # type: ignore[arg-type]
        out.append(Record(ethernet(ipv4(src, dst, TCP, seg)), ts_ns=T0 + int(t * MS)))

    add(0, C, S, port, 80, flags=SYN, seq=0)
    if syn_retry:
        add(100, C, S, port, 80, flags=SYN, seq=0)
    add(1, S, C, 80, port, flags=SYN | ACK, seq=0, ack=1)
    add(1, C, S, port, 80, flags=ACK, seq=1, ack=1)
    for i in range(6):
        add(5, C, S, port, 80, flags=PSH | ACK, seq=1 + 100 * i, ack=1, payload=b"x" * 100)
        add(1, S, C, 80, port, flags=ACK, seq=1, ack=101 + 100 * i)
    for i in retransmit:
        add(200, C, S, port, 80, flags=PSH | ACK, seq=1 + 100 * i, ack=1, payload=b"x" * 100)
    for _ in range(dup_acks):
        add(1, S, C, 80, port, flags=ACK, seq=1, ack=601)
    return out


def workspace(tmp: Path, name: str, conns: list[list[Record]]) -> Path:
    records = sorted((r for c in conns for r in c), key=lambda r: r.ts_ns)
    cap = write_pcap(tmp / f"{name}.pcap", records)
    return workspace_of([cap], tmp / name)


class SymptomRule:
    """A stand-in fault detector: a window with any retransmission or dup-ACK scores beyond every benign window."""

    feature_names_in_ = np.array(["retransmissions", "dup_acks", "out_of_order"], dtype=object)
    threshold_ = 0.5
    target_fpr = 0.01

    def score_samples(self, x: pd.DataFrame) -> np.ndarray:
        return x.to_numpy(np.float64).sum(axis=1)

    def benign_tail(self, score: np.ndarray) -> np.ndarray:
        return np.where(score > 0, 0.0, 1.0)  # far beyond benign: one such window alone would be medium


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tracking store whose fault champion is :class:`SymptomRule` (no compromise champion: that kind is skipped)."""
    d = tmp_path_factory.mktemp("store")
    tracker = Tracker(d, f"sqlite:///{d / 'mlflow.db'}")
    example = pd.DataFrame({"retransmissions": [0, 2], "dup_acks": [0, 1], "out_of_order": [0, 0]})
    with tracker.run("faults", "rule") as run:
        uri = tracker.log_model(SymptomRule(), example, pip_requirements=[])
    tracker.register("faults", uri, run.info.run_id)
    return tracker.uri


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("loss")
    lossy = [connection(40000, 0, retransmit=(1, 2)), connection(40001, 10, retransmit=(3,)),
             connection(40002, 20, syn_retry=True)]  # fmt: skip
    return {
        # one connection retransmits 2 data segments: one loss event's retries, too little to call the path lossy
        "sporadic": workspace(tmp, "sporadic", [connection(40000, 0, retransmit=(1, 2))]),
        # 3 data segments retransmitted by 2 connections (and a SYN retry that is not data): real loss
        "lossy": workspace(tmp, "lossy", lossy),
        # duplicate ACKs and nothing resent: reordering
        "reordered": workspace(tmp, "reordered", [connection(40000, 0, dup_acks=3)]),
    }


def test_fault_windows_count_retransmitting_connections_not_segments_nor_syn_retries(cases: dict[str, Path]) -> None:
    fw = pd.read_parquet(cases["lossy"] / "features" / "fault_windows")
    pair = fw[fw["scope"] == f"{C}-{S}"].iloc[0]
    assert pair["retransmitting_flows"] == 2
    assert round(pair["retransmission_rate"] * pair["tcp_data_packets"]) == 3  # data retransmissions
    assert pair["retransmissions"] == 4  # the SYN retry counts as a retransmission, not as data
    sporadic = pd.read_parquet(cases["sporadic"] / "features" / "fault_windows")
    assert sporadic["retransmitting_flows"].tolist() == [1] * len(sporadic)
    # a context column: the fault model's inputs are what they were
    assert "retransmitting_flows" not in feature_columns("faults")
    assert "retransmission_rate" in feature_columns("faults")


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [(0, 10, 0.0), (5, 10, 0.2366), (3, 5, 0.2307), (10, 10, 0.7225), (3, 0, 0.0), (12, 10, 0.7225)],
)
def test_wilson_lower_bound(k: float, n: float, expected: float) -> None:
    assert wilson_lower(k, n) == pytest.approx(expected, abs=1e-4)


def evidence(k: float, flows: float | None, n: float = 100.0, base: float = 0.0, matched: float = 0.0) -> dict:
    return {"data_retransmissions": k, "retransmitting_flows": flows, "retransmitting_flows_at_most": flows,
            "data_packets": n, "lower_bound_retransmission_rate": wilson_lower(k, n),
            "baseline_retransmission_rate": base, "matched_loss": matched}  # fmt: skip


@pytest.mark.parametrize(
    ("ev", "rule"),
    [
        (evidence(2, 1), None),
        (evidence(2, 2), None),
        (evidence(3, 2, n=10_000, base=0.01), "flows"),
        (evidence(3, 1, n=10), "rate"),  # 30 % of 10 segments resent; lower bound 11 % > baseline 0
        (evidence(3, 1, n=1000, base=0.01), None),  # 0.3 % resent on a path that usually resends 1 %
        # 3 of 600 resent by one connection on a scope of clean fabric traffic (baseline 0.03 %): the lower bound,
        # 0.17 %, is what a healthy internet path loses, not a fault
        (evidence(3, 1, n=600, base=0.0003), None),
        (evidence(8, 1, n=380, base=0.0003), "rate"),  # 2.1 % resent: lower bound 1.1 %, above ambient loss
        (evidence(3, None, n=10), "rate"),  # windows built before the flow count existed
        (evidence(0, 0, matched=3), "matched"),
        (evidence(1, 1, matched=2), None),
    ],
)
def test_minimum_evidence_of_loss(ev: dict, rule: str | None) -> None:
    assert loss_shown(ev) == rule


def test_shortfall_says_what_was_seen() -> None:
    assert shortfall(evidence(2, 1)) == "2 retransmitted data segments in 1 flow"
    assert shortfall(evidence(1, 1)) == "1 retransmitted data segment in 1 flow"
    assert shortfall(evidence(0, 0)) == "no retransmitted data segment"
    text = shortfall(evidence(3, 1, n=1000, base=0.01))
    assert text.startswith("3 retransmitted data segments in 1 flow, rate lower bound 0.1%")
    assert text.endswith("not above the scope's baseline 1.0%")
    text = shortfall(evidence(3, 1, n=600, base=0.0003))
    assert text.endswith("rate lower bound 0.2% not above ambient internet loss 0.5% (the scope's baseline: 0.03%)")
    spread = evidence(2, 1) | {"retransmitting_flows_at_most": 2.0}
    assert shortfall(spread) == "2 retransmitted data segments in 1 to 2 flows"


def test_baseline_comes_from_the_scopes_unflagged_windows() -> None:
    rows = pd.DataFrame({"retransmission_rate": [0.5], "tcp_data_packets": [10], "retransmitting_flows": [1],
                         "matched_loss": [0]})  # fmt: skip
    quiet = pd.DataFrame({"retransmission_rate": [0.01, 0.0], "tcp_data_packets": [100, 100],
                          "retransmitting_flows": [1, 0], "matched_loss": [0, 0]})  # fmt: skip
    ev = loss_evidence(rows, quiet)
    assert ev["data_retransmissions"] == 5 and ev["baseline_retransmission_rate"] == pytest.approx(1 / 200)
    assert loss_shown(ev) == "rate"


def test_a_far_but_thin_loss_window_is_capped_at_low_with_its_reason() -> None:
    # one window far beyond benign (medium without the rule): 2 data segments of 80 resent by one connection
    df = windows({("host_pair", "host2-host3"): [5]}, retransmissions=2.0, retransmission_rate=2 / 80,
                 retransmitting_flows=1.0)  # fmt: skip
    (f,) = fault_findings(df, VM_HOSTS, MODEL)
    assert (f.type, f.severity) == ("loss", "low")
    assert f.evidence["insufficient_evidence"] == "2 retransmitted data segments in 1 flow"
    assert f.evidence["loss_evidence"]["data_retransmissions"] == 2
    assert f.summary.endswith("too little evidence of loss (2 retransmitted data segments in 1 flow).")
    enough = windows({("host_pair", "host2-host3"): [5]}, retransmissions=3.0, retransmission_rate=3 / 80,
                     retransmitting_flows=2.0)  # fmt: skip
    (g,) = fault_findings(enough, VM_HOSTS, MODEL)
    assert (g.type, g.severity) == ("loss", "medium") and "insufficient_evidence" not in g.evidence


def test_dup_acks_without_retransmission_are_reordering_at_low() -> None:
    df = windows({("host", "host2"): [3, 4, 5, 6]}, dup_acks=20.0, out_of_order=4.0)
    (f,) = fault_findings(df, VM_HOSTS, MODEL)
    assert (f.type, f.severity) == ("reordering", "low")  # four far windows: high for any other type
    assert "reordered packets" in f.summary and "80 duplicate ACKs, 16 out-of-order packets" in f.summary
    assert "no retransmission" in f.summary


def test_fail_on_sets_which_findings_exit_3(cases: dict[str, Path], store: str, tmp_path: Path) -> None:
    def inspect(case: str, *extra: str) -> tuple[int, str]:
        r = runner.invoke(app, ["inspect", "-w", str(cases[case]), "--tracking-uri", store, *extra])
        return r.exit_code, r.output

    code, out = inspect("sporadic", "--force")
    assert code == 0, out  # its only finding is low
    assert "1 finding (1 low) below --fail-on medium" in out
    code, out = inspect("sporadic", "--fail-on", "low")
    assert code == 3, out
    assert "fault: loss" in out and "too little" in out  # the low finding is in the table now
    r = runner.invoke(app, ["inspect", "-w", str(cases["sporadic"]), "--tracking-uri", store, "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["meta"]["fail_on"] == "medium"
    (f,) = [f for f in doc["findings"] if f["kind"] == "fault"]  # low findings stay in the JSON
    assert (f["type"], f["severity"]) == ("loss", "low") and f["evidence"]["insufficient_evidence"]
    assert "too little evidence" in (cases["sporadic"] / "report.html").read_text()

    assert inspect("lossy", "--force")[0] == 3  # 3 data segments in 2 connections: medium
    code, out = inspect("lossy", "--fail-on", "high")
    assert code == 0 and "1 finding (1 medium) below --fail-on high" in out, out
    conf = tmp_path / "strict.yaml"
    conf.write_text("inspect:\n  fail_on: low\n")
    assert inspect("sporadic", "-c", str(conf))[0] == 3
    assert inspect("sporadic", "-c", str(conf), "--fail-on", "medium")[0] == 0  # the flag wins

    code, out = inspect("reordered", "--fail-on", "low", "--json")
    assert code == 3 and {(f["type"], f["severity"]) for f in json.loads(out)["findings"]} == {("reordering", "low")}
    assert inspect("reordered")[0] == 0


def test_a_bad_fail_on_is_a_one_line_error(cases: dict[str, Path], store: str, tmp_path: Path) -> None:
    r = runner.invoke(app, ["inspect", "-w", str(cases["sporadic"]), "--tracking-uri", store, "--fail-on", "urgent"])
    assert r.exit_code == 2 and "--fail-on must be high, medium or low, got 'urgent'" in r.output
    conf = tmp_path / "bad.yaml"
    conf.write_text("inspect:\n  fail_on: sometimes\n")
    r = runner.invoke(app, ["inspect", "-w", str(cases["sporadic"]), "--tracking-uri", store, "-c", str(conf)])
    assert r.exit_code == 2 and "inspect.fail_on" in r.output and len(r.output.strip().splitlines()) == 1
