"""Flows stage on disk: ``WORKSPACE/packets/`` → ``WORKSPACE/flows/`` and ``WORKSPACE/tcp_events/``,
streamed per capture point.

``tcp_events`` (:data:`netsentry.pipeline.core.schemas.TCP_EVENTS`) holds the packets with a TCP analysis bit; it
has its own manifest with the same inputs and config, and both tables are rewritten together.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from netsentry.pipeline.capture.stage import captured_tenant_map
from netsentry.pipeline.capture.tenants import TenantMap, endpoint_labels
from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.errors import InputNotFoundError
from netsentry.pipeline.core.io import (
    atomic_dir,
    manifest_digest,
    parquet_writer,
    read_manifest,
    require_table,
    write_manifest,
)
from netsentry.pipeline.core.schemas import FLOWS, PACKETS, TCP_EVENTS, ip_text
from netsentry.pipeline.flows.assemble import FlowConfig, assemble_stream
from netsentry.pipeline.flows.hop_duplicates import HopDuplicates

TOP_N = 5
_TOP_COLUMNS = ("capture_point", "src_ip", "src_port", "dst_ip", "dst_port", "protocol", "bidirectional_packets",
                "retransmissions", "dup_acks", "zero_windows", "handshake_rtt_ms", "conn_state")  # fmt: skip


@dataclass
class FlowSummary:
    """What a flows run read and wrote, with a TCP-health digest for people."""

    packets: int = 0
    flows: int = 0
    capture_points: int = 0
    seconds: float = 0.0
    skipped_unchanged: bool = False
    out_dir: Path | None = None
    tcp_events: int = 0
    hop_duplicates: int = 0  # packets a point saw again after a router hop, counted once
    retransmissions: int = 0
    dup_acks: int = 0
    zero_windows: int = 0
    conn_states: Counter[str] = field(default_factory=Counter)
    top_retransmitting: list[dict[str, Any]] = field(default_factory=list)

    def add(self, table: pa.Table) -> None:
        """Fold one written chunk of flows into the digest."""
        self.flows += table.num_rows
        for name in ("retransmissions", "dup_acks", "zero_windows"):
            setattr(self, name, getattr(self, name) + int(pc.sum(table.column(name)).as_py() or 0))
        states = table.column("conn_state").combine_chunks()
        counts = np.bincount(states.indices.to_numpy(), minlength=len(states.dictionary))
        self.conn_states.update({k: int(v) for k, v in zip(states.dictionary.to_pylist(), counts, strict=True) if v})
        retx = table.column("retransmissions").to_numpy()
        if retx.max(initial=0) > 0:
            idx = np.argsort(-retx, kind="stable")[:TOP_N]
            rows = table.select(_TOP_COLUMNS).take(idx[retx[idx] > 0])
            self.top_retransmitting = sorted(
                self.top_retransmitting + _readable(rows), key=lambda r: -r["retransmissions"]
            )[:TOP_N]


def _readable(rows: pa.Table) -> list[dict[str, Any]]:
    out = rows.to_pylist()
    for r, src, dst in zip(out, ip_text(rows.column("src_ip")), ip_text(rows.column("dst_ip")), strict=True):
        r["src_ip"], r["dst_ip"] = src, dst
    return out


def _labeler(tmap: TenantMap) -> Callable[[np.ndarray, np.ndarray], tuple[pa.Array, pa.Array]] | None:
    if not tmap.config.vpcs:
        return None
    return lambda vni, ip16: endpoint_labels(vni, ip16, tmap)


@dataclass
class _Sink:
    """A Parquet writer that counts the rows written through it."""

    writer: pq.ParquetWriter
    rows: int = 0

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)
        self.rows += table.num_rows


def _packet_chunks(parts: list[Path], batch: int) -> Iterator[pa.Table]:
    for p in parts:
        f = pq.ParquetFile(p, pre_buffer=False)  # pre-buffering keeps every row group: unbounded
        for rb in f.iter_batches(batch_size=batch, columns=PACKETS.names):
            yield pa.Table.from_batches([rb])


class _Progress:
    """Counts packets as they are read and reports ``(done, total)``."""

    def __init__(self, total: int, on_progress: Callable[[int, int], None] | None) -> None:
        self.done, self.total, self.on_progress = 0, total, on_progress
        if on_progress is not None:
            on_progress(0, total)

    def counted(self, chunks: Iterator[pa.Table]) -> Iterator[pa.Table]:
        for c in chunks:
            yield c
            self.done += c.num_rows
            if self.on_progress is not None:
                self.on_progress(self.done, self.total)


def run_flows(
    workspace: str | Path,
    config: FlowConfig | None = None,
    *,
    batch_packets: int = 131_072,
    force: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> FlowSummary:
    """Assemble flows for every capture point of the workspace's packets table."""
    config = config or FlowConfig()
    pkt_dir = catalog.path(workspace, catalog.PACKETS)
    require_table(pkt_dir, "packets")
    manifest = read_manifest(pkt_dir)
    if manifest is None:
        raise InputNotFoundError("packets table has no _manifest.json; rerun `netsentry capture`", path=str(pkt_dir))
    inputs = {"packets_manifest_sha256": manifest_digest(manifest)}
    run_config: dict[str, Any] = {"idle_timeout_s": config.idle_timeout_s, "active_timeout_s": config.active_timeout_s}
    out_dir = catalog.path(workspace, catalog.FLOWS)
    ev_dir = catalog.path(workspace, catalog.TCP_EVENTS)
    summary = FlowSummary(out_dir=out_dir)
    prev, prev_ev = read_manifest(out_dir), read_manifest(ev_dir)
    if catalog.up_to_date([prev, prev_ev], {"inputs": inputs, "config": run_config}, force=force):
        summary.skipped_unchanged = True
        summary.flows = int(prev.get("rows", 0))  # type: ignore[union-attr]
        summary.packets = int(prev.get("packets", 0))  # type: ignore[union-attr]
        summary.tcp_events = int(prev_ev.get("rows", 0))  # type: ignore[union-attr]
        return summary
    labeler = _labeler(captured_tenant_map(pkt_dir))
    by_point: dict[str, list[dict[str, Any]]] = {}
    for part in manifest["parts"]:
        by_point.setdefault(part["capture_point"], []).append(part)
    total = sum(p["rows"] for p in manifest["parts"])
    start = time.perf_counter()
    progress = _Progress(total, on_progress)
    written, ev_written = [], []
    with atomic_dir(out_dir) as tmp, atomic_dir(ev_dir) as ev_tmp:
        for idx, (point, parts) in enumerate(sorted(by_point.items())):
            parts.sort(key=lambda p: (p["first_ts_ns"] or 0, p["part"]))
            chunks = progress.counted(_packet_chunks([pkt_dir / p["part"] for p in parts], batch_packets))
            name = f"part-{idx:05d}.parquet"
            rows, ev_rows = _assemble_point(point, chunks, config, labeler, tmp / name, ev_tmp / name, summary)
            written.append({"part": name, "capture_point": point, "rows": rows})
            ev_written.append({"part": name, "capture_point": point, "rows": ev_rows})
            summary.tcp_events += ev_rows
        summary.packets = total
        summary.capture_points = len(by_point)
        summary.seconds = time.perf_counter() - start
        common = {"stage": "flows", "inputs": inputs, "config": run_config}
        write_manifest(tmp, {**common, "parts": written, "rows": summary.flows, "packets": total,
                             "tcp_events": summary.tcp_events, "hop_duplicates": summary.hop_duplicates})  # fmt: skip
        write_manifest(ev_tmp, {**common, "table": "tcp_events", "parts": ev_written, "rows": summary.tcp_events,
                                "packets": total})  # fmt: skip
    return summary


def _assemble_point(
    point: str,
    chunks: Iterator[pa.Table],
    config: FlowConfig,
    labeler: Callable[[np.ndarray, np.ndarray], tuple[pa.Array, pa.Array]] | None,
    out: Path,
    events_out: Path,
    summary: FlowSummary,
) -> tuple[int, int]:
    """Write one capture point's flows and TCP events; the rows of each."""
    writer = parquet_writer(out, FLOWS)
    events = _Sink(parquet_writer(events_out, TCP_EVENTS))
    rows = 0
    hops = HopDuplicates()
    try:
        for table in assemble_stream(point, chunks, config, labeler, on_tcp_events=events.write, hops=hops):
            writer.write_table(table)
            rows += table.num_rows
            summary.add(table)
        summary.hop_duplicates += hops.dropped
    finally:
        writer.close()
        events.writer.close()
    return rows, events.rows
