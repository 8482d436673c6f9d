"""Fault windows of a workspace: its ``packets`` (capture points interleaved in time), ``tcp_events`` and flows
tables streamed through :class:`FaultWindowBuilder`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from netsentry.pipeline.capture.stage import captured_tenant_map
from netsentry.pipeline.capture.tenants import TenantMap
from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.errors import InputNotFoundError
from netsentry.pipeline.core.io import MANIFEST, read_manifest, require_table, table_parts
from netsentry.pipeline.features.faults.builder import FaultWindowBuilder
from netsentry.pipeline.features.faults.catalogue import EVENT_COLUMNS, FLOW_COLUMNS, PACKET_COLUMNS, PORT_COLUMNS


def _table_batches(parts: list[Path], columns: Sequence[str], batch: int) -> Iterator[pa.Table]:
    for part in parts:
        f = pq.ParquetFile(part, pre_buffer=False)  # pre-buffering keeps every row group: unbounded
        for rb in f.iter_batches(batch_size=batch, columns=list(columns)):
            yield pa.Table.from_batches([rb])


def _interleaved(streams: dict[str, Iterator[pa.Table]]) -> Iterator[pa.Table]:
    """Chunks of several time-ordered streams, always the one that starts earliest next."""
    pending: dict[str, pa.Table] = {}
    for name, it in streams.items():
        for chunk in it:
            if chunk.num_rows:
                pending[name] = chunk
                break
    while pending:
        name = min(pending, key=lambda k: pending[k].column("ts_ns")[0].as_py())
        yield pending.pop(name)
        for chunk in streams[name]:
            if chunk.num_rows:
                pending[name] = chunk
                break


def build_fault_windows(
    workspace: str | Path,
    window_s: float = 1.0,
    *,
    tmap: TenantMap | None = None,
    batch_packets: int = 131_072,
    on_progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Fault windows of a workspace: its packets (capture points interleaved in time, so the matching
    buffer stays small), ``tcp_events`` and flows. ``tmap`` defaults to the map the packets were
    captured with; ``on_progress(packets done, packets total)``."""
    ws = Path(workspace)
    pkt_dir = catalog.path(ws, catalog.PACKETS)
    require_table(pkt_dir, "packets")
    require_table(catalog.path(ws, catalog.FLOWS), "flows")
    if not (catalog.path(ws, catalog.TCP_EVENTS) / MANIFEST).exists():
        raise InputNotFoundError(
            "no tcp_events table; rerun `netsentry flows --force`", path=str(catalog.path(ws, catalog.TCP_EVENTS))
        )
    manifest = read_manifest(pkt_dir) or {}
    if tmap is None:
        tmap = captured_tenant_map(pkt_dir)
    by_point: dict[str, list[dict[str, Any]]] = {}
    for part in manifest.get("parts", []):
        by_point.setdefault(part["capture_point"], []).append(part)
    builder = FaultWindowBuilder(window_s, tmap, capture_points=sorted(by_point))
    streams = {}
    for point, parts in by_point.items():
        parts.sort(key=lambda p: (p.get("first_ts_ns") or 0, p["part"]))
        streams[point] = _table_batches([pkt_dir / p["part"] for p in parts], PACKET_COLUMNS, batch_packets)
    total = sum(int(p.get("rows", 0)) for p in manifest.get("parts", []))
    done = 0
    for chunk in _interleaved(streams):
        builder.add_packets(chunk)
        done += chunk.num_rows
        if on_progress is not None:
            on_progress(done, total)
    event_parts, flow_parts = (
        table_parts(catalog.path(ws, catalog.TCP_EVENTS)),
        table_parts(catalog.path(ws, catalog.FLOWS)),
    )
    for chunk in _table_batches(event_parts, EVENT_COLUMNS + PORT_COLUMNS, batch_packets):
        builder.add_tcp_events(chunk)
    for chunk in _table_batches(flow_parts, FLOW_COLUMNS + PORT_COLUMNS, batch_packets):
        builder.add_flows(chunk)
    return builder.finish()
