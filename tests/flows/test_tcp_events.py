"""The tcp_events table: per-packet TCP analysis bits, gathered by the flows stage, against tshark."""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from netsentry.pipeline.capture.reader import read_packets
from netsentry.pipeline.capture.stage import CaptureOptions, run_capture
from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.schemas import TCP_ANALYSIS_BITS, TCP_EVENTS, ip_text
from netsentry.pipeline.flows import kernel as fk
from netsentry.pipeline.flows.assemble import FlowAssembler, FlowConfig, assemble_stream
from netsentry.pipeline.flows.stage import run_flows
from tests.tshark_conv import DATA, GOLDEN_TRACES, has_tshark

NO_SPLIT = FlowConfig(idle_timeout_s=1e7, active_timeout_s=1e8)
needs_tshark = pytest.mark.skipif(not has_tshark(), reason="tshark not installed (apt-get install tshark)")
FIELDS = {bit: f"tcp.analysis.{name}" for name, bit in TCP_ANALYSIS_BITS.items()}


def packets_of(path: Path) -> pa.Table:
    return pa.concat_tables(list(read_packets(path)))


def tshark_events(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """tshark's flagged IP packets: (epoch ns, analysis bits, source address)."""
    args = ["tshark", "-r", str(path), "-Y", "ip || ipv6", "-T", "fields", "-E", "occurrence=f"]
    args += ["-e", "frame.time_epoch", "-e", "ip.src", "-e", "ipv6.src"]
    for f in FIELDS.values():
        args += ["-e", f]
    ts, bits, src = [], [], []
    for line in subprocess.run(args, check=True, capture_output=True, text=True).stdout.splitlines():
        t, s4, s6, *flags = line.split("\t")
        b = sum(bit for bit, v in zip(FIELDS, flags, strict=True) if v)
        if b:
            ts.append(int(Decimal(t) * 1_000_000_000))
            bits.append(b)
            src.append(s4 or s6)
    return np.array(ts, np.int64), np.array(bits, np.int64), src


def test_bits_match_the_kernel() -> None:
    kernel = {
        "retransmission": fk.PA_RETX,
        "fast_retransmission": fk.PA_FAST_RETX,
        "spurious_retransmission": fk.PA_SPURIOUS,
        "out_of_order": fk.PA_OOO,
        "duplicate_ack": fk.PA_DUPACK,
        "zero_window": fk.PA_ZEROWIN,
        "lost_segment": fk.PA_LOST,
        "keep_alive": fk.PA_KEEPALIVE,
    }
    assert kernel == TCP_ANALYSIS_BITS


def chunked_events(packets: pa.Table, size: int, shuffle: bool) -> pa.Table:
    """tcp_events of ``packets`` pushed in chunks of ``size``; ``shuffle`` scrambles each chunk's rows
    (keeping the order of packets with equal timestamps, which the assembler cannot restore)."""
    rng = np.random.default_rng(0)
    asm = FlowAssembler("x", NO_SPLIT)
    out = []
    for i in range(0, packets.num_rows, size):
        chunk = packets.slice(i, size)
        if shuffle:
            _, same_ts = np.unique(chunk.column("ts_ns").to_numpy(), return_inverse=True)
            key = rng.permutation(same_ts.max() + 1)[same_ts]
            chunk = chunk.take(pa.array(np.lexsort((np.arange(chunk.num_rows), key))))
        asm.push(chunk)
        assert len(asm.last_packet_flags) == chunk.num_rows
        out.append(asm.last_tcp_events())
    asm.finish()
    assert asm.last_tcp_events().num_rows == 0
    return pa.concat_tables(out)


@needs_tshark
@pytest.mark.parametrize("name", GOLDEN_TRACES)
def test_tcp_events_equal_tshark_per_packet(name: str) -> None:
    packets = packets_of(DATA / name)
    events = chunked_events(packets, 97, shuffle=True)
    assert events.schema.equals(TCP_EVENTS)
    ts, bits, src = tshark_events(DATA / name)
    assert events.num_rows == len(ts)
    np.testing.assert_array_equal(events.column("ts_ns").to_numpy(), ts)
    np.testing.assert_array_equal(events.column("analysis").to_numpy(), bits)
    assert list(ip_text(events.column("src_ip"))) == src
    for bit in FIELDS:  # counts per flag
        assert int(np.count_nonzero(events.column("analysis").to_numpy() & bit)) == int(np.count_nonzero(bits & bit))


def test_chunking_and_row_order_do_not_change_the_events() -> None:
    packets = packets_of(DATA / "ssh-dups.pcap")
    whole = chunked_events(packets, packets.num_rows, shuffle=False)
    assert whole.num_rows > 100
    for size, shuffle in ((1, False), (33, True), (500, True)):
        assert chunked_events(packets, size, shuffle).equals(whole)


def test_assemble_stream_reports_events_and_keeps_flows() -> None:
    packets = packets_of(DATA / "retransmit-fast009.pcap")
    got: list[pa.Table] = []
    flows = pa.concat_tables(
        list(assemble_stream("p", [packets.slice(0, 20), packets.slice(20)], NO_SPLIT, None, got.append))
    )
    plain = pa.concat_tables(list(assemble_stream("p", [packets.slice(0, 20), packets.slice(20)], NO_SPLIT)))
    assert flows.equals(plain)
    events = pa.concat_tables(got)
    a = events.column("analysis").to_numpy()
    assert int(np.count_nonzero(a & TCP_ANALYSIS_BITS["retransmission"])) == flows.column("retransmissions")[0].as_py()
    assert int(np.count_nonzero(a & TCP_ANALYSIS_BITS["duplicate_ack"])) == flows.column("dup_acks")[0].as_py()
    assert set(events.column("capture_point").to_pylist()) == {"p"}


def test_flows_stage_writes_tcp_events(tmp_path: Path) -> None:
    run_capture([DATA / "ssh-dups.pcap", DATA / "sshguess.pcap"], tmp_path, CaptureOptions())
    summary = run_flows(tmp_path, NO_SPLIT, batch_packets=64)
    events = pq.read_table(catalog.path(tmp_path, catalog.TCP_EVENTS))
    assert summary.tcp_events == events.num_rows > 0
    a = events.column("analysis").to_numpy()
    flows = pq.read_table(tmp_path / "flows")
    for bit, col in ((1, "retransmissions"), (2, "fast_retransmissions"), (16, "dup_acks"), (8, "out_of_order")):
        assert int(np.count_nonzero(a & bit)) == pa.compute.sum(flows.column(col)).as_py()
    ts = events.filter(pa.compute.equal(events.column("capture_point"), "ssh-dups.pcap")).column("ts_ns").to_numpy()
    assert np.all(np.diff(ts) >= 0)
    again = run_flows(tmp_path, NO_SPLIT, batch_packets=64)
    assert again.skipped_unchanged and again.tcp_events == summary.tcp_events
    # a workspace whose tcp_events are missing (older version) is rebuilt
    (catalog.path(tmp_path, catalog.TCP_EVENTS) / "_manifest.json").unlink()
    assert not run_flows(tmp_path, NO_SPLIT, batch_packets=64).skipped_unchanged
    assert pq.read_table(catalog.path(tmp_path, catalog.TCP_EVENTS)).num_rows == events.num_rows
