"""Fault windows: counts on crafted tables, symptoms of simulated faults, the label rule, tshark on a real capture."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from netsentry.pipeline.capture.stage import CaptureOptions, run_capture
from netsentry.pipeline.capture.tenants import load_tenant_map, tenant_map_from_dict
from netsentry.pipeline.core.errors import ConfigError, SchemaError
from netsentry.pipeline.core.schemas import ACK, PACKETS, RST, SYN, TCP_EVENTS, ip16_array, ip16_from_text
from netsentry.pipeline.features.faults.builder import FaultWindowBuilder
from netsentry.pipeline.features.faults.catalogue import FAULT_FEATURES, KEY_COLUMNS
from netsentry.pipeline.features.faults.workspace import build_fault_windows
from netsentry.pipeline.features.labels import label_fault_windows, read_labels
from netsentry.pipeline.flows.stage import run_flows
from netsentry.pipeline.simulate.scenario import load_scenario
from netsentry.pipeline.simulate.stage import simulate, write_outputs
from tests.paths import REPO
from tests.tshark_conv import DATA, has_tshark

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S  # a window boundary
TMAP = tenant_map_from_dict(
    {
        "gateway": "gw",
        "vpcs": [
            {
                "id": "v",
                "tenant": "t",
                "cidr": "10.0.0.0/16",
                "subnets": [
                    {
                        "cidr": "10.0.1.0/24",
                        "ports": [
                            {"ip": "10.0.1.1", "vm": "a", "host": "h1"},
                            {"ip": "10.0.1.2", "vm": "b", "host": "h2"},
                            {"ip": "10.0.1.3", "vm": "c", "host": "h1"},
                        ],
                    }
                ],
            }
        ],
    }
)
A, B, C, EXT = "10.0.1.1", "10.0.1.2", "10.0.1.3", "8.8.8.8"


def packets_table(rows: list[dict]) -> pa.Table:
    """A packets table (netsentry.pipeline.core.schemas.PACKETS) from a few dicts; unspecified fields are 0."""
    n = len(rows)
    cols: dict[str, object] = {}
    for f in PACKETS:
        if f.name in ("src_ip", "dst_ip"):
            cols[f.name] = ip16_array(ip16_from_text([r[f.name[:3]] for r in rows]))
        elif f.name == "capture_point":
            cols[f.name] = pa.array([r.get("point", "p") for r in rows], pa.string()).dictionary_encode()
        elif f.name in ("tenant", "vm"):
            cols[f.name] = pa.array(["external"] * n, pa.string()).dictionary_encode()
        else:
            default = {"proto": 6, "ip_version": 4, "frame_len": 54 + rows[0].get("payload_len", 0)}.get(f.name, 0)
            cols[f.name] = pa.array([r.get(f.name, default) for r in rows], f.type)
    cols["frame_len"] = pa.array([54 + r.get("payload_len", 0) for r in rows], pa.uint32())
    cols["pkt_hash"] = pa.array([r.get("pkt_hash", i + 1) for i, r in enumerate(rows)], pa.uint64())
    return pa.Table.from_arrays([cols[f.name] for f in PACKETS], schema=PACKETS)


def crafted_packets() -> list[dict]:
    """Window 0: 10 data packets a→b (3 in one millisecond), 2 RSTs b→a, a SYN a→b, one packet a→c
    (same host); window 1: 4 packets a→internet and an ICMP unreachable back."""
    rows = [dict(ts_ns=T0 + 100 * MS + k * 10_000, src=A, dst=B, payload_len=100, tcp_flags=ACK) for k in range(3)]
    rows += [dict(ts_ns=T0 + k * 100 * MS, src=A, dst=B, payload_len=100, tcp_flags=ACK) for k in range(2, 9)]
    rows += [dict(ts_ns=T0 + 900 * MS + k, src=B, dst=A, tcp_flags=RST | ACK) for k in range(2)]
    rows += [dict(ts_ns=T0 + 950 * MS, src=A, dst=B, tcp_flags=SYN)]
    rows += [dict(ts_ns=T0 + 960 * MS, src=A, dst=C, tcp_flags=ACK)]
    rows += [dict(ts_ns=T0 + S + k * 100 * MS, src=A, dst=EXT, payload_len=10, tcp_flags=ACK) for k in range(1, 5)]
    rows += [dict(ts_ns=T0 + S + 500 * MS, src=EXT, dst=A, proto=1, icmp_type=3)]
    return sorted(rows, key=lambda r: r["ts_ns"])


def events_table(rows: list[tuple[int, str, str, int, int]]) -> pa.Table:
    """tcp_events rows (ts_ns, src, dst, payload_len, analysis bits) at point ``p``."""
    n = len(rows)
    return pa.Table.from_arrays(
        [
            pa.array([r[0] for r in rows], pa.int64()),
            pa.array(["p"] * n, pa.string()).dictionary_encode(),
            pa.array([0] * n, pa.uint32()),
            ip16_array(ip16_from_text([r[1] for r in rows])),
            ip16_array(ip16_from_text([r[2] for r in rows])),
            pa.array([40000] * n, pa.uint16()),
            pa.array([80] * n, pa.uint16()),
            pa.array([ACK] * n, pa.uint16()),
            pa.array([r[3] for r in rows], pa.uint32()),
            pa.array([r[4] for r in rows], pa.int16()),
        ],
        schema=TCP_EVENTS,
    )


def flows_table(rows: list[tuple[int, str, str, str, float | None]], syns: tuple[int, int] = (1, 1)) -> pa.Table:
    """The flows columns fault windows read: (first_seen_ns, src, dst, conn_state, handshake_rtt_ms) at ``p``;
    ``syns``: every flow's SYNs sent by its client and its server."""
    n = len(rows)
    return pa.table(
        {
            "capture_point": pa.array(["p"] * n).dictionary_encode(),
            "vni": pa.array([0] * n, pa.uint32()),
            "src_ip": ip16_array(ip16_from_text([r[1] for r in rows])),
            "dst_ip": ip16_array(ip16_from_text([r[2] for r in rows])),
            "protocol": pa.array([6] * n, pa.uint8()),
            "first_seen_ns": pa.array([r[0] for r in rows], pa.int64()),
            "conn_state": pa.array([r[3] for r in rows]).dictionary_encode(),
            "handshake_rtt_ms": pa.array([r[4] for r in rows], pa.float64()),
            "src2dst_syn_packets": pa.array([syns[0]] * n, pa.int64()),
            "dst2src_syn_packets": pa.array([syns[1]] * n, pa.int64()),
            "dst2src_packets": pa.array([1] * n, pa.int64()),
        }
    )


EVENTS = [(T0 + 600 * MS, A, B, 100, 1), (T0 + 700 * MS, A, B, 100, 1 | 2), (T0 + 650 * MS, B, A, 0, 16)]
FLOWS = [(T0 + 100 * MS, A, B, "SF", 2.0), (T0 + 950 * MS, A, B, "S0", None), (T0 + 1100 * MS, A, EXT, "SF", 30.0)]


def build(packets: pa.Table, chunk: int | None = None, **kw: object) -> pd.DataFrame:
    b = FaultWindowBuilder(1.0, TMAP, **kw)  # type: ignore[arg-type]
    step = chunk or max(packets.num_rows, 1)
    for i in range(0, packets.num_rows, step):
        b.add_packets(packets.slice(i, step))
    b.add_tcp_events(events_table(EVENTS))
    b.add_flows(flows_table(FLOWS))
    return b.finish()


def row(df: pd.DataFrame, scope_type: str, scope: str, window: int) -> pd.Series:
    hit = df[(df["scope_type"] == scope_type) & (df["scope"] == scope) & (df["window_start_ns"] == T0 + window * S)]
    assert len(hit) == 1, f"no single row for {scope_type} {scope} window {window}"
    return hit.iloc[0]


@pytest.fixture(scope="module")
def crafted() -> pd.DataFrame:
    return build(packets_table(crafted_packets()))


def test_only_a_routers_refusals_count_as_unreachable() -> None:
    """Net unreachable and administratively prohibited count; a scan's host and port unreachables do not."""
    rows = [dict(ts_ns=T0 + k * MS, src=EXT, dst=A, proto=1, icmp_type=3, icmp_code=c) for k, c in
            enumerate((0, 13, 1, 3, 3, 1, 10))]  # fmt: skip
    assert row(build(packets_table(rows)), "capture_point", "p", 0)["icmp_unreachable"] == 3


def test_catalogue_matches_the_docs() -> None:
    text = (REPO / "docs" / "features-faults.md").read_text().split("\n## Columns\n", 1)[1]
    documented = dict(re.findall(r"^\| `(\w+)` \| (.+) \|$", text, flags=re.M))
    assert documented == FAULT_FEATURES
    assert all(re.search(r"\((count|bytes|ratio|ms|packets/s)\)$", m) for m in FAULT_FEATURES.values())


def test_rows_and_columns(crafted: pd.DataFrame) -> None:
    assert list(crafted.columns) == [*KEY_COLUMNS, *FAULT_FEATURES]
    got = Counter(zip(crafted["scope_type"], crafted["scope"], (crafted["window_start_ns"] - T0) // S, strict=True))
    expected = {("capture_point", "p", 0), ("capture_point", "p", 1), ("host", "h1", 0), ("host", "h1", 1),
                ("host", "h2", 0), ("host", "gw", 1), ("host_pair", "h1-h2", 0), ("host_pair", "gw-h1", 1),
                ("vm", "t/a", 0), ("vm", "t/a", 1), ("vm", "t/b", 0), ("vm", "t/c", 0)}  # fmt: skip
    assert set(got) == expected and max(got.values()) == 1
    assert not crafted[list(FAULT_FEATURES)].isna().any().any()
    assert (crafted["window_s"] == 1.0).all() and (crafted["capture_points"] == 1).all()


def test_known_counts(crafted: pd.DataFrame) -> None:
    p0, p1 = row(crafted, "capture_point", "p", 0), row(crafted, "capture_point", "p", 1)
    assert (p0["packets"], p0["rst_packets"], p0["syn_packets"], p0["tcp_data_packets"]) == (14, 2, 1, 10)
    assert p0["bytes"] == 10 * 154 + 4 * 54
    assert p0["max_packets_per_ms"] == 3 and p0["burstiness"] == pytest.approx(3 / (14 / 1000))
    assert p0["rst_rate"] == pytest.approx(2 / 14)
    assert (p1["packets"], p1["icmp_unreachable"], p1["burstiness"]) == (5, 1, pytest.approx(1 / (5 / 1000)))
    assert row(crafted, "host", "h1", 0)["packets"] == 14  # a→c stays inside h1: counted once
    pair = row(crafted, "host_pair", "h1-h2", 0)
    assert (pair["packets"], pair["retransmissions"], pair["fast_retransmissions"], pair["dup_acks"]) == (13, 2, 1, 1)
    assert pair["retransmission_rate"] == pytest.approx(2 / 10)
    assert pair["dup_ack_rate"] == pytest.approx(1 / 13)
    assert (pair["connections"], pair["syn_unanswered"], pair["handshake_failures"]) == (2, 1, 1)
    assert pair["handshake_failure_rate"] == pytest.approx(0.5)
    assert (pair["handshakes"], pair["handshake_rtt_p50_ms"]) == (1, pytest.approx(2.0))
    assert row(crafted, "vm", "t/c", 0)["packets"] == 1
    assert row(crafted, "host", "gw", 1)["handshake_rtt_p50_ms"] == pytest.approx(30.0)
    # packets_ratio: against the median of the scope's other windows
    assert p0["packets_ratio"] == pytest.approx(14 / 5) and p1["packets_ratio"] == pytest.approx(5 / 14)


def test_reset_connections_are_established_then_reset() -> None:
    b = FaultWindowBuilder(1.0, TMAP)
    b.add_packets(packets_table(crafted_packets()))
    b.add_tcp_events(events_table(EVENTS))
    extra = [(T0 + 200 * MS, A, B, "RSTR", 1.0), (T0 + 300 * MS, A, B, "RSTO", 1.0), (T0 + 400 * MS, A, B, "REJ", None)]
    b.add_flows(flows_table([*FLOWS, *extra]))
    pair = row(b.finish(), "host_pair", "h1-h2", 0)
    assert (pair["connections"], pair["reset_connections"]) == (5, 2)  # a refused SYN (REJ) is not a reset
    assert pair["reset_connection_rate"] == pytest.approx(2 / 5)


@pytest.mark.parametrize("syns", [(2, 1), (1, 2)])
def test_a_retried_handshake_gives_no_rtt_sample(syns: tuple[int, int]) -> None:
    """Karn's rule: a handshake whose SYN (or SYN/ACK) was sent twice "took" the 1 s retry timer; that is a loss
    (``retried_handshake_rate``), not a slow path, so it is no handshake sample and not in the RTT percentiles."""
    b = FaultWindowBuilder(1.0, TMAP)
    b.add_packets(packets_table(crafted_packets()))
    b.add_flows(flows_table([(T0 + 100 * MS, A, B, "SF", 2.0)]))
    b.add_flows(flows_table([(T0 + 200 * MS, A, B, "SF", 1002.0)], syns=syns))
    pair = row(b.finish(), "host_pair", "h1-h2", 0)
    assert (pair["connections"], pair["handshakes"], pair["retried_handshake_rate"]) == (2, 1, 0.5)
    assert pair["handshake_rtt_p99_ms"] == pytest.approx(2.0)


def test_silent_service_attempts_count_a_clients_retries_of_a_dead_server() -> None:
    """``a`` retries a dead internet server every 5 s for 35 s; ``c`` is silent once, then answers. The count covers
    the last 30 s, stays in view after the latest attempt for that span, and never counts a service that answered."""
    attempts = [k * 5 * S for k in range(8)]
    later = [37 * S, 80 * S]
    rows = [dict(ts_ns=T0 + t, src=A, dst=EXT, tcp_flags=SYN) for t in attempts]
    rows += [dict(ts_ns=T0 + t, src=A, dst=B, tcp_flags=ACK) for t in later]
    rows += [dict(ts_ns=T0 + t, src=A, dst=C, tcp_flags=SYN) for t in (S + 1, 2 * S + 1)]
    b = FaultWindowBuilder(1.0, TMAP)
    b.add_packets(packets_table(sorted(rows, key=lambda r: r["ts_ns"])))
    b.add_flows(flows_table([(T0 + t, A, EXT, "S0", None) for t in attempts]
                            + [(T0 + S + 1, A, C, "S0", None), (T0 + 2 * S + 1, A, C, "SF", 1.0)]))  # fmt: skip
    df = b.finish()
    got = {w: int(row(df, "vm", "t/a", w)["silent_service_attempts"]) for w in (0, 1, 2, 5, 35, 37, 80)}
    # window 1: ext's one attempt so far, or c's unanswered one; window 35: ext's attempts at 10..35 s
    assert got == {0: 1, 1: 1, 2: 1, 5: 2, 35: 6, 37: 6, 80: 0}
    assert int(row(df, "vm", "t/c", 2)["silent_service_attempts"]) == 0  # the server side began no connection


@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
def test_chunking_does_not_change_the_result(crafted: pd.DataFrame, chunk: int) -> None:
    pd.testing.assert_frame_equal(build(packets_table(crafted_packets()), chunk), crafted)


def test_two_capture_points_give_loss_and_hop_delay() -> None:
    """The same 10 data packets at ``up`` and 2 ms later at ``down``, one of them lost in between."""
    rows = [
        r | {"pkt_hash": 1000 + i} for i, r in enumerate(crafted_packets()) if r["dst"] == B and r.get("payload_len")
    ]
    down = [r | {"point": "down", "ts_ns": r["ts_ns"] + 2 * MS} for r in rows[:4] + rows[5:]]
    table = packets_table(sorted([r | {"point": "up"} for r in rows] + down, key=lambda r: r["ts_ns"]))
    for hint in (["down", "up"], None):
        df = build(table, 4, capture_points=hint)
        for scope_type, scope in (("host_pair", "h1-h2"), ("host", "h1"), ("host", "h2")):
            r = row(df, scope_type, scope, 0)
            assert (r["matched_packets"], r["matched_loss"], r["capture_points"]) == (10, 1, 2)
            assert r["matched_loss_rate"] == pytest.approx(0.1)
            assert r["hop_delay_p50_ms"] == pytest.approx(2.0, rel=0.01)
            assert r["hop_delay_worst_p50_ms"] == pytest.approx(2.0, rel=0.01)
        assert row(df, "capture_point", "up", 0)["matched_packets"] == 0
        assert row(df, "host_pair", "h1-h2", 0)["packets"] == 19


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError):
        FaultWindowBuilder(0.0)
    with pytest.raises(ConfigError):
        FaultWindowBuilder(0.0005)
    with pytest.raises(SchemaError, match="pkt_hash"):
        FaultWindowBuilder().add_packets(packets_table(crafted_packets()).drop_columns(["pkt_hash"]))
    empty = FaultWindowBuilder().finish()
    assert list(empty.columns) == [*KEY_COLUMNS, *FAULT_FEATURES] and len(empty) == 0


# ------------------------------------------------------------------ labels


def test_label_rule() -> None:
    rows = [("capture_point", "p"), ("host", "h1"), ("host", "h2"), ("host", "h3"), ("host", "gw"),
            ("host_pair", "h1-h2"), ("host_pair", "h2-h3"), ("host_pair", "gw-h1"), ("vm", "t/a"), ("vm", "t/b"),
            ("vm", "t/c"), ("vm", "10.0.1.99")]  # fmt: skip
    windows = pd.DataFrame(
        [(t, s, T0 + w * S, 1.0) for w in range(4) for t, s in rows],
        columns=["scope_type", "scope", "window_start_ns", "window_s"],
    )
    lab = pd.DataFrame(
        [
            ("fault", "loss", "host", "h2", T0 + 500 * MS, T0 + S, "", "", 0, ""),  # overlaps windows 0
            ("fault", "cut", "host_pair", "h2-h1", T0 + S, T0 + 2 * S, "", "", 0, ""),  # window 1
            ("fault", "rst", "vm", "10.0.1.1", T0 + 2 * S, T0 + 3 * S, "t", "a", 0, "host=h1; x=1"),  # window 2
            ("compromise", "scan", "vm", "10.0.1.2", T0, T0 + 4 * S, "t", "b", 0, ""),  # not a fault
        ],
        columns=["kind", "scenario", "scope_type", "scope", "start_ns", "end_ns", "tenant", "vm", "vni", "detail"],
    )
    out = label_fault_windows(windows, lab, TMAP)
    got = {(r.scope, (r.window_start_ns - T0) // S): (r.label, r.label_scenario) for r in out.itertuples()}
    want = {
        # host h2 faulty: h2, its pairs, VM b on it; h1 and h3 talk to h2 (pair rows exist): ambiguous
        0: {"p": -1, "h1": -1, "h2": 1, "h3": -1, "gw": 0, "h1-h2": 1, "h2-h3": 1, "gw-h1": 0, "t/a": 0, "t/b": 1,
            "t/c": 0, "10.0.1.99": -1},
        # pair h1-h2: only that pair; its hosts and the VMs on them are ambiguous
        1: {"p": -1, "h1": -1, "h2": -1, "h3": 0, "gw": 0, "h1-h2": 1, "h2-h3": 0, "gw-h1": 0, "t/a": -1, "t/b": -1,
            "t/c": -1, "10.0.1.99": -1},
        # vm a: only it; its host h1 and h1's pairs are ambiguous
        2: {"p": -1, "h1": -1, "h2": 0, "h3": 0, "gw": 0, "h1-h2": -1, "h2-h3": 0, "gw-h1": -1, "t/a": 1, "t/b": 0,
            "t/c": 0, "10.0.1.99": 0},
        3: {s: 0 for _, s in rows},
    }  # fmt: skip
    names = {0: "loss", 1: "cut", 2: "rst"}
    for w, expected in want.items():
        for scope, lbl in expected.items():
            assert got[(scope, w)] == (lbl, names[w] if lbl == 1 else ""), (scope, w)
    assert out["label"].dtype == np.int8


def test_label_link_gateway_and_no_labels() -> None:
    windows = pd.DataFrame(
        {
            "scope_type": ["host", "host_pair", "host"],
            "scope": ["gw", "gw-h1", "h1"],
            "window_start_ns": [T0] * 3,
            "window_s": [1.0] * 3,
        }
    )
    lab = pd.DataFrame(
        [("fault", "spike", "link", "gw", T0, T0 + S, "", "", 0, "")],
        columns=["kind", "scenario", "scope_type", "scope", "start_ns", "end_ns", "tenant", "vm", "vni", "detail"],
    )
    assert label_fault_windows(windows, lab, TMAP)["label"].tolist() == [1, 1, -1]
    assert label_fault_windows(windows, lab.iloc[:0], TMAP)["label"].tolist() == [0, 0, 0]
    # a pair that usually carries 5 packets a second cannot show the fault: ambiguous, not faulty
    quiet = windows.assign(packets=[400, 5, 300], packets_ratio=[1.0, 1.0, 1.0])
    assert label_fault_windows(quiet, lab, TMAP)["label"].tolist() == [1, -1, -1]
    # nor can a VM on a faulted host that usually sends a packet or two; a busy one shows it
    vms = pd.DataFrame({"scope_type": ["vm", "vm"], "scope": ["t/b", "t/b"], "window_start_ns": [T0, T0],
                        "window_s": [1.0, 1.0], "packets": [2, 50], "packets_ratio": [1.0, 1.0]})  # fmt: skip
    host = lab.assign(scope_type="host", scope="h2")
    assert label_fault_windows(vms, host, TMAP)["label"].tolist() == [-1, 1]


def test_a_fault_window_is_faulty_only_when_covered_enough_and_a_partial_loss_drops_enough() -> None:
    # host h2 (400 packets a window) and its pair with h1 (40 a window) in three 1 s windows
    windows = pd.DataFrame({"scope_type": ["host", "host_pair"] * 3, "scope": ["h2", "h1-h2"] * 3,
                            "window_start_ns": [T0 + w * S for w in range(3) for _ in range(2)], "window_s": 1.0,
                            "packets": [400, 40] * 3, "packets_ratio": 1.0})  # fmt: skip
    cols = ["kind", "scenario", "scope_type", "scope", "start_ns", "end_ns", "tenant", "vm", "vni", "detail"]

    def labels(start_ms: int, end_ms: int, detail: str) -> list[int]:
        lab = pd.DataFrame([("fault", "f", "host", "h2", T0 + start_ms * MS, T0 + end_ms * MS, "", "", 0, detail)],
                           columns=cols)  # fmt: skip
        return label_fault_windows(windows, lab, TMAP)["label"].tolist()

    # the fault enters window 0 for its last 0.3 s and leaves window 2 after 0.2 s: those mostly show the healthy
    # path (ambiguous); 5 % loss drops 20 of the host's 400 packets, 2 of the pair's 40 (ambiguous)
    assert labels(700, 2200, "loss_p=0.05; connections=9") == [-1, -1, 1, -1, -1, -1]
    assert labels(700, 2200, "delay_ms=80") == [-1, -1, 1, 1, -1, -1]  # a delay touches every packet
    assert labels(500, 1000, "delay_ms=80") == [1, 1, 0, 0, 0, 0]  # half a window is enough
    assert labels(1400, 1450, "delay_ms=80") == [0, 0, 1, 1, 0, 0]  # a fault shorter than that, whole in it


def test_label_gateway_change_covers_its_subnets_vms() -> None:
    """A config change (link gateway, ``subnet=`` in the detail): the tenant's VMs in that subnet; the gateway, its
    pairs and the hosts of those VMs are ambiguous; another tenant's VM with an address in the CIDR is not covered."""
    tmap = tenant_map_from_dict({"gateway": "gw", "vpcs": [
        *TMAP.config.model_dump(mode="json")["vpcs"],
        {"id": "w", "tenant": "u", "cidr": "10.0.0.0/16",
         "subnets": [{"cidr": "10.0.1.0/24", "ports": [{"ip": "10.0.1.1", "vm": "z", "host": "h3"}]}]}]})  # fmt: skip
    scopes = [("vm", "t/a"), ("vm", "t/b"), ("vm", "u/z"), ("host", "gw"), ("host_pair", "gw-h3"), ("host", "h1"),
              ("host", "h3"), ("host_pair", "h1-h3")]  # fmt: skip
    windows = pd.DataFrame({"scope_type": [t for t, _ in scopes], "scope": [s for _, s in scopes],
                            "window_start_ns": [T0] * len(scopes), "window_s": [1.0] * len(scopes),
                            "packets": [50, 3, 50, 400, 300, 300, 300, 300],
                            "packets_ratio": [1.0] * len(scopes)})  # fmt: skip
    detail = "host=gateway; subnet=10.0.1.0/24; action=route_withdrawn; answer=icmp"
    lab = pd.DataFrame([("fault", "config_change", "link", "gw", T0, T0 + S, "t", "", 0, detail)],
                       columns=["kind", "scenario", "scope_type", "scope", "start_ns", "end_ns", "tenant", "vm", "vni",
                                "detail"])  # fmt: skip
    got = dict(zip(windows["scope"], label_fault_windows(windows, lab, tmap)["label"].tolist(), strict=True))
    # b is in the subnet but too quiet to show it; z is another tenant's; h3's pair with h1 never crosses the gateway
    assert got == {"t/a": 1, "t/b": -1, "u/z": 0, "gw": -1, "gw-h3": -1, "h1": -1, "h3": 0, "h1-h3": 0}
    # a label listing the VMs that had traffic across the cut covers those; the subnet's others are ambiguous
    listed = lab.assign(detail=detail + "; vms=10.0.1.2")
    busy_b = windows.assign(packets=[50, 50, 50, 400, 300, 300, 300, 300])
    got = dict(zip(windows["scope"], label_fault_windows(busy_b, listed, tmap)["label"].tolist(), strict=True))
    assert (got["t/a"], got["t/b"], got["u/z"], got["h1"]) == (-1, 1, 0, -1)  # h1 hosts the unlisted a
    # without a tenant map, VM scopes are addresses
    bare = windows.assign(scope=["10.0.1.1", "10.0.2.9", "10.0.1.7", "gw", "gw-h3", "h1", "h3", "h1-h3"])
    assert label_fault_windows(bare, lab, None)["label"].tolist()[:3] == [1, 0, 1]


# ------------------------------------------------------------------ simulated faults


@pytest.fixture(scope="session")
def behaviour_workspaces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Workspaces (packets, flows, tcp_events) of one-fault scenarios: host1 (or subnet b) faulty from 10 s to 15 s."""
    out = {}
    for name in ("loss_burst", "latency_spike", "blackhole", "config_change"):
        root = tmp_path_factory.mktemp(name)
        scenario = load_scenario(REPO / "configs" / "scenarios" / "behaviours" / f"{name}.yaml")
        write_outputs(simulate(scenario), root / "sim", snaplen=128)
        run_capture(sorted((root / "sim").glob("*.pcap")), root, CaptureOptions(tenants=root / "sim" / "tenants.yaml"))
        run_flows(root)
        out[name] = root
    return out


@pytest.fixture(scope="session")
def behaviours(behaviour_workspaces: dict[str, Path]) -> dict[str, pd.DataFrame]:
    """Their fault windows, labelled."""
    out = {}
    for name, root in behaviour_workspaces.items():
        tmap = load_tenant_map(root / "sim" / "tenants.yaml")
        out[name] = label_fault_windows(build_fault_windows(root), read_labels(root / "sim" / "labels.csv"), tmap)
    return out


def test_three_capture_points_and_hosts(behaviours: dict[str, pd.DataFrame]) -> None:
    df = behaviours["loss_burst"]
    assert set(df.loc[df["scope_type"] == "capture_point", "scope"]) == {"vm.pcap", "host.pcap", "gateway.pcap"}
    assert {"host0", "host1", "gateway"} <= set(df.loc[df["scope_type"] == "host", "scope"])
    assert (df["capture_points"] == 3).mean() > 0.3
    assert df["matched_packets"].sum() > 0 and df["matched_loss"].sum() == 0  # simulated loss is off the taps


def test_result_does_not_depend_on_chunk_size(behaviour_workspaces: dict[str, Path]) -> None:
    root = behaviour_workspaces["latency_spike"]
    pd.testing.assert_frame_equal(build_fault_windows(root, batch_packets=2_500), build_fault_windows(root))


def host_rows(df: pd.DataFrame, host: str = "host1") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fault windows, normal windows) of a host, the capture's ragged first and last windows left out."""
    h = df[(df["scope_type"] == "host") & (df["scope"] == host)].iloc[1:-1]
    assert (h["label"] == 1).sum() == 5
    return h[h["label"] == 1], h[h["label"] == 0]


def test_loss_burst_raises_the_retransmission_rate(behaviours: dict[str, pd.DataFrame]) -> None:
    fault, normal = host_rows(behaviours["loss_burst"])
    busy = fault[fault["tcp_data_packets"] >= 50]
    assert len(busy) >= 4
    assert busy["retransmission_rate"].min() > 0.015  # ambient internet loss is ~0.1 %
    # the second after the burst retransmits what was lost at its very end, one RTO later
    after = normal["window_start_ns"] == fault["window_start_ns"].max() + 10**9
    assert busy["retransmission_rate"].min() > 10 * normal.loc[~after, "retransmission_rate"].max() + 1e-9
    assert fault["dup_acks"].sum() > 5 * max(normal["dup_acks"].sum(), 1)


def test_latency_spike_raises_the_handshake_rtt(behaviours: dict[str, pd.DataFrame]) -> None:
    df = behaviours["latency_spike"]
    fault, normal = host_rows(df)
    measured = fault[fault["handshakes"] >= 5]
    assert len(measured) >= 3 and (measured["handshake_rtt_path_ratio"] > 1.5).all()
    assert normal["handshake_rtt_path_ratio"].median() == pytest.approx(1.0, abs=0.1)
    # within one path (the pair to the gateway) the plain ratio to the scope's baseline works too
    pair = df[(df["scope_type"] == "host_pair") & (df["scope"] == "gateway-host1") & (df["handshakes"] > 0)]
    assert (pair.loc[pair["label"] == 1, "handshake_rtt_ratio"] > 1.5).all()
    assert pair.loc[pair["label"] == 0, "handshake_rtt_ratio"].median() == pytest.approx(1.0, abs=0.15)
    # and the one-way delay between capture points
    assert fault["hop_delay_ratio"].median() > 5 * normal["hop_delay_ratio"].median()


def test_blackhole_drops_the_traffic(behaviours: dict[str, pd.DataFrame]) -> None:
    fault, normal = host_rows(behaviours["blackhole"])
    assert fault["packets_ratio"].max() < 0.2
    assert fault["packets_ratio"].max() < normal["packets_ratio"].min()  # the five quietest windows
    assert normal["packets_ratio"].median() == pytest.approx(1.0, abs=0.5)
    assert fault["retransmissions"].sum() > 20


def test_config_change_shows_at_the_cut_off_vms(behaviours: dict[str, pd.DataFrame]) -> None:
    """The subnet's VMs: their windows in the change are labelled, and there their router's refusals count as ICMP
    unreachable; the other subnet's VMs get none."""
    df = behaviours["config_change"]
    vms = df[df["scope_type"] == "vm"]
    cut = vms["scope"].isin(["lab/lab-app-1", "lab/lab-db-1"])
    assert set(vms.loc[vms["label"] == 1, "scope"]) <= {"lab/lab-app-1", "lab/lab-db-1"}
    assert (vms["label"] == 1).sum() >= 3
    assert vms.loc[cut & (vms["label"] == 1), "icmp_unreachable"].sum() >= 2
    assert vms.loc[~cut & vms["scope"].str.startswith("lab/"), "icmp_unreachable"].sum() == 0
    # no window teaches that a refusal is normal: the router, seen by its address, is ambiguous in the change
    assert df.loc[df["label"] == 0, "icmp_unreachable"].sum() == 0


# ------------------------------------------------------------------ a real capture against tshark


SHARED = REPO.parent / "shared" / "data"


def tshark_retransmissions_per_second(path: Path) -> dict[int, int]:
    args = ["tshark", "-r", str(path), "-Y", "tcp.analysis.retransmission", "-T", "fields", "-e", "frame.time_epoch"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout.split()
    return dict(Counter(int(Decimal(t)) * S for t in out))


def capture_point_windows(path: Path, ws: Path) -> pd.DataFrame:
    run_capture([path], ws, CaptureOptions())
    run_flows(ws)
    df = build_fault_windows(ws)
    return df[df["scope_type"] == "capture_point"].set_index("window_start_ns")


def test_ssh_dups_retransmissions_per_second(tmp_path: Path) -> None:
    """ssh-dups.pcap (vendored): a real capture with retransmissions; per second, ours equal tshark's."""
    path = DATA / "ssh-dups.pcap"
    cp = capture_point_windows(path, tmp_path)
    assert cp["retransmissions"].sum() == 166 and (cp["retransmissions"] > 0).sum() >= 2
    hosts = build_fault_windows(tmp_path).query("scope_type == 'host'")
    assert set(hosts["scope"]) == {"192.168.0.102", "192.168.0.112"}  # no map: a host per address
    if not has_tshark():
        pytest.skip("tshark not installed")
    assert {w: int(n) for w, n in cp["retransmissions"].items() if n} == tshark_retransmissions_per_second(path)


@pytest.mark.parametrize("name", ["zeek/traces/tcp/ssh-dups.pcap", "chrissanders/tcp_retransmissions.pcapng"])
def test_shared_fault_captures_against_tshark(tmp_path: Path, name: str) -> None:
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"shared capture {path} absent")
    if not has_tshark():
        pytest.skip("tshark not installed")
    cp = capture_point_windows(path, tmp_path)
    theirs = tshark_retransmissions_per_second(path)
    assert theirs and {w: int(n) for w, n in cp["retransmissions"].items() if n} == theirs
