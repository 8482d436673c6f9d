"""Golden flow tests: our flows against tshark on real captures (NFStream-style)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from netsentry.pipeline.capture.reader import read_packets
from netsentry.pipeline.core.schemas import ip_text
from netsentry.pipeline.flows import kernel as fk
from netsentry.pipeline.flows.assemble import FlowAssembler, FlowConfig, flows_from_packets
from tests.tshark_conv import DATA, GOLDEN, GOLDEN_TRACES, golden, has_tshark

NO_SPLIT = FlowConfig(idle_timeout_s=1e7, active_timeout_s=1e8)
needs_tshark = pytest.mark.skipif(not has_tshark(), reason="tshark not installed (apt-get install tshark)")


def packets_of(path: Path) -> pa.Table:
    return pa.concat_tables(list(read_packets(path)))


def conversations(flows: pa.Table) -> pd.DataFrame:
    """Our flows summed per 5-tuple, oriented like the golden table (a = lower endpoint text)."""
    df = flows.select(
        ["protocol", "src_port", "dst_port", "src2dst_packets", "dst2src_packets", "src2dst_bytes", "dst2src_bytes"]
    ).to_pandas()
    df["src"], df["dst"] = ip_text(flows.column("src_ip")), ip_text(flows.column("dst_ip"))
    df = df[df["protocol"].isin([6, 17])]
    rows = []
    for r in df.itertuples():
        rows.append(
            {
                "proto": r.protocol,
                "a": r.src,
                "a_port": r.src_port,
                "b": r.dst,
                "b_port": r.dst_port,
                "frames_a2b": r.src2dst_packets,
                "frames_b2a": r.dst2src_packets,
                "bytes_a2b": r.src2dst_bytes,
                "bytes_b2a": r.dst2src_bytes,
            }
        )
    return pd.DataFrame(rows)


def unordered(df: pd.DataFrame) -> pd.DataFrame:
    """Orient every conversation so that endpoint a sorts first; sum duplicates."""
    flip = np.array(
        [(a, ap) > (b, bp) for a, ap, b, bp in zip(df["a"], df["a_port"], df["b"], df["b_port"], strict=True)]
    )
    out = df.copy()
    for x, y in (("a", "b"), ("a_port", "b_port"), ("frames_a2b", "frames_b2a"), ("bytes_a2b", "bytes_b2a")):
        out.loc[flip, x], out.loc[flip, y] = df.loc[flip, y].to_numpy(), df.loc[flip, x].to_numpy()
    keys = ["proto", "a", "a_port", "b", "b_port"]
    out = out.astype({"proto": int, "a_port": int, "b_port": int})
    return out.groupby(keys, as_index=False).sum().sort_values(keys).reset_index(drop=True)


@pytest.mark.parametrize("name", GOLDEN_TRACES)
def test_flows_match_golden_conversations(name: str) -> None:
    expected = pd.read_csv(GOLDEN / f"{name}.conv.csv")
    ours = conversations(flows_from_packets(packets_of(DATA / name), NO_SPLIT))
    pd.testing.assert_frame_equal(unordered(ours), unordered(expected), check_dtype=False)


@needs_tshark
@pytest.mark.parametrize("name", ["ssh-dups.pcap", "sshguess.pcap", "wikipedia.pcap"])
def test_golden_files_are_what_tshark_says(name: str) -> None:
    stored = pd.read_csv(GOLDEN / f"{name}.conv.csv")
    pd.testing.assert_frame_equal(unordered(golden(DATA / name)), unordered(stored), check_dtype=False)


# tshark 4.0.17: tcp.analysis.retransmission / fast_retransmission / duplicate_ack packet counts
TSHARK_TCP_ANALYSIS = {
    "ssh-dups.pcap": (166, 92, 114),
    "retransmit-fast009.pcap": (3, 1, 5),
    "bro.org.pcap": (0, 0, 0),
}


@pytest.mark.parametrize("name", sorted(TSHARK_TCP_ANALYSIS))
def test_retransmission_and_dup_ack_counts(name: str) -> None:
    flows = flows_from_packets(packets_of(DATA / name), NO_SPLIT)
    got = tuple(
        int(pa.compute.sum(flows.column(c)).as_py()) for c in ("retransmissions", "fast_retransmissions", "dup_acks")
    )
    assert got == TSHARK_TCP_ANALYSIS[name]


_ANALYSIS_FIELDS = {
    fk.PA_RETX: "tcp.analysis.retransmission",
    fk.PA_FAST_RETX: "tcp.analysis.fast_retransmission",
    fk.PA_SPURIOUS: "tcp.analysis.spurious_retransmission",
    fk.PA_OOO: "tcp.analysis.out_of_order",
    fk.PA_DUPACK: "tcp.analysis.duplicate_ack",
    fk.PA_ZEROWIN: "tcp.analysis.zero_window",
    fk.PA_LOST: "tcp.analysis.lost_segment",
    fk.PA_KEEPALIVE: "tcp.analysis.keep_alive",
}


@needs_tshark
@pytest.mark.parametrize("name", GOLDEN_TRACES)
def test_per_packet_tcp_analysis_equals_tshark(name: str) -> None:
    packets = packets_of(DATA / name)
    ts = packets.column("ts_ns").to_numpy()
    assert np.all(np.diff(ts) >= 0), "the comparison below assumes a time-ordered capture"
    asm = FlowAssembler("x", NO_SPLIT)
    asm.push(packets)
    ours = asm.last_packet_flags
    args = ["tshark", "-r", str(DATA / name), "-Y", "ip || ipv6", "-T", "fields", "-E", "occurrence=f"]
    for f in _ANALYSIS_FIELDS.values():
        args += ["-e", f]
    lines = subprocess.run(args, check=True, capture_output=True, text=True).stdout.splitlines()
    assert len(lines) == len(ours)
    theirs = np.zeros(len(lines), dtype=np.int64)
    for i, line in enumerate(lines):
        for (bit, _), v in zip(_ANALYSIS_FIELDS.items(), line.split("\t"), strict=True):
            if v:
                theirs[i] |= bit
    mismatch = np.flatnonzero(theirs != ours)
    assert len(mismatch) == 0, f"{len(mismatch)} packets differ, first frames (IP index) {mismatch[:10]}"


@needs_tshark
def test_handshake_rtt_equals_tshark_initial_rtt() -> None:
    path = DATA / "retransmit-fast009.pcap"
    flows = flows_from_packets(packets_of(path), NO_SPLIT)
    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-Y",
            "tcp.analysis.initial_rtt",
            "-T",
            "fields",
            "-E",
            "occurrence=f",
            "-e",
            "tcp.analysis.initial_rtt",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert flows.column("handshake_rtt_ms")[0].as_py() == pytest.approx(float(out[0]) * 1000, abs=1e-3)


def test_chunked_assembly_equals_whole() -> None:
    """Flows spanning chunk boundaries come out identical to one-shot assembly."""
    packets = pa.concat_tables([packets_of(DATA / n) for n in ("sshguess.pcap",)])
    cfg = FlowConfig(idle_timeout_s=5.0, active_timeout_s=30.0)
    whole = flows_from_packets(packets, cfg)
    asm = FlowAssembler(packets.column("capture_point")[0].as_py(), cfg)
    parts = [asm.push(packets.slice(i, 17)) for i in range(0, packets.num_rows, 17)] + [asm.finish()]
    chunked = pa.concat_tables(parts).sort_by([("first_seen_ns", "ascending"), ("flow_id", "ascending")])
    assert chunked.num_rows == whole.num_rows
    assert chunked.equals(whole.cast(chunked.schema)) or chunked.to_pandas().equals(whole.to_pandas())


def test_idle_timeout_splits_and_keeps_totals() -> None:
    packets = packets_of(DATA / "cwd-navigation.pcap")
    one = flows_from_packets(packets, NO_SPLIT)
    split = flows_from_packets(packets, FlowConfig(idle_timeout_s=0.5, active_timeout_s=1e8))
    assert one.num_rows == 1 and split.num_rows > 1
    assert pa.compute.sum(split.column("bidirectional_packets")).as_py() == 8317
    assert pa.compute.sum(split.column("bidirectional_bytes")).as_py() == one.column("bidirectional_bytes")[0].as_py()
    gaps = (split.column("first_seen_ns").to_numpy()[1:] - split.column("last_seen_ns").to_numpy()[:-1]) / 1e9
    assert np.all(gaps > 0.5)
    reasons = split.column("end_reason").to_pylist()
    assert set(reasons[:-1]) == {"idle"}


def test_active_timeout_cuts_long_flows() -> None:
    packets = packets_of(DATA / "cwd-navigation.pcap")
    cut = flows_from_packets(packets, FlowConfig(idle_timeout_s=1e7, active_timeout_s=60.0))
    dur = cut.column("bidirectional_duration_ms").to_numpy()
    assert cut.num_rows >= 10 and np.all(dur < 60_000)
    assert cut.column("end_reason").to_pylist()[:-1] == ["active"] * (cut.num_rows - 1)
    assert pa.compute.sum(cut.column("bidirectional_packets")).as_py() == 8317


def test_ssh_bruteforce_flows_have_expected_shape() -> None:
    flows = flows_from_packets(packets_of(DATA / "sshguess.pcap"))
    df = flows.to_pandas()
    assert len(df) == 11
    assert set(ip_text(flows.column("src_ip"))) == {"192.168.56.1"}
    assert set(ip_text(flows.column("dst_ip"))) == {"192.168.56.103"}
    assert set(df["dst_port"]) == {22}
    assert set(df["conn_state"]) <= {"SF", "S1", "RSTO", "RSTR"}
    assert (df["handshake_rtt_ms"] > 0).all()


def test_connection_matches_zeeks_conn_log() -> None:
    """Zeek's own verdict for retransmit-fast009.pcap: state RSTO, 17 packets out, 22 back."""
    log = (DATA / "zeek-baseline" / "rxmit-history.conn.log").read_text().splitlines()
    names = next(line for line in log if line.startswith("#fields")).split("\t")[1:]
    row = dict(zip(names, next(line for line in log if not line.startswith("#")).split("\t"), strict=True))
    flows = flows_from_packets(packets_of(DATA / "retransmit-fast009.pcap")).to_pylist()
    assert len(flows) == 1
    f = flows[0]
    assert (f["src_port"], f["dst_port"]) == (int(row["id.orig_p"]), int(row["id.resp_p"]))
    assert f["conn_state"] == row["conn_state"] == "RSTO"
    assert (f["src2dst_packets"], f["dst2src_packets"]) == (int(row["orig_pkts"]), int(row["resp_pkts"]))
    assert f["bidirectional_duration_ms"] == pytest.approx(float(row["duration"]) * 1000, abs=0.01)
