"""Features stage on disk: ``flows/`` (+ ``packets/``, ``tcp_events/``) → ``features/{tenant_windows,fault_windows}``.

The tables are built by pure functions (:func:`tenant_windows`, :class:`FaultWindowBuilder`); this module reads
the workspace, joins labels when given, and writes each table atomically with a manifest. Unchanged inputs,
labels and settings → nothing is rebuilt.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from netsentry.pipeline.capture.stage import captured_tenant_map
from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.errors import InputNotFoundError
from netsentry.pipeline.core.io import (
    MANIFEST,
    atomic_dir,
    file_fingerprint,
    manifest_digest,
    read_manifest,
    require_table,
    write_manifest,
)
from netsentry.pipeline.features.faults.catalogue import FAULT_FEATURES
from netsentry.pipeline.features.faults.workspace import build_fault_windows
from netsentry.pipeline.features.labels import label_fault_windows, label_tenant_windows, read_labels
from netsentry.pipeline.features.tenant.catalogue import FLOW_COLUMNS, TENANT_FEATURES
from netsentry.pipeline.features.tenant.windows import WindowSpec, tenant_windows


@dataclass
class FeatureSummary:
    """What a features run wrote."""

    tenant_rows: int = 0
    fault_rows: int = 0
    tenant_positive: dict[str, int] = field(default_factory=dict)
    fault_positive: dict[str, int] = field(default_factory=dict)
    labelled: bool = False
    seconds: float = 0.0
    skipped_unchanged: bool = False
    out_dir: Path | None = None


def _positives(df: pd.DataFrame) -> dict[str, int]:
    if "label" not in df.columns:
        return {}
    pos = df[df["label"] == 1]
    return {str(k): int(v) for k, v in pos.groupby("label_scenario").size().items()}


def _write(df: pd.DataFrame, out_dir: Path, manifest: dict[str, Any]) -> None:
    with atomic_dir(out_dir) as tmp:
        table = pa.Table.from_pandas(df, preserve_index=False)
        pq.write_table(table, tmp / "part-00000.parquet", compression="lz4")
        write_manifest(tmp, {**manifest, "rows": len(df), "columns": table.column_names})


def run_features(
    workspace: str | Path,
    *,
    labels: str | Path | None = None,
    spec: WindowSpec | None = None,
    fault_window_s: float = 1.0,
    force: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> FeatureSummary:
    """Build both feature tables of a workspace (labels joined when a labels CSV is given)."""
    ws = Path(workspace)
    spec = spec or WindowSpec()
    flows_dir, pkt_dir, ev_dir = (catalog.path(ws, t) for t in (catalog.FLOWS, catalog.PACKETS, catalog.TCP_EVENTS))
    require_table(flows_dir, "flows")
    require_table(pkt_dir, "packets")
    if labels is not None and not Path(labels).is_file():
        raise InputNotFoundError("labels file not found", path=str(labels))
    if not (ev_dir / MANIFEST).exists():
        raise InputNotFoundError("tcp_events table missing; rerun `netsentry flows --force`", path=str(ev_dir))
    dns_dir = catalog.path(ws, catalog.DNS)
    has_dns = (dns_dir / MANIFEST).exists()  # captures read before the dns table existed fall back to flows
    stratum_dir = catalog.path(ws, catalog.STRATUM)
    has_stratum = (stratum_dir / MANIFEST).exists()  # captures read before it existed read no mining messages
    inputs = {
        "flows_manifest_sha256": manifest_digest(read_manifest(flows_dir)),
        "packets_manifest_sha256": manifest_digest(read_manifest(pkt_dir)),
        "tcp_events_manifest_sha256": manifest_digest(read_manifest(ev_dir)),
        "dns_manifest_sha256": manifest_digest(read_manifest(dns_dir)) if has_dns else None,
        "stratum_manifest_sha256": manifest_digest(read_manifest(stratum_dir)) if has_stratum else None,
        "labels": file_fingerprint(labels) if labels else None,
        # code that adds or changes features must rebuild tables written before it
        "feature_catalogue_sha256": hashlib.sha256(
            "\n".join([*TENANT_FEATURES, "|", *FAULT_FEATURES]).encode()
        ).hexdigest(),
    }
    config = {"window_s": spec.window_s, "hop_s": spec.hop_s, "fault_window_s": fault_window_s}
    tw_dir, fw_dir = catalog.path(ws, catalog.TENANT_WINDOWS), catalog.path(ws, catalog.FAULT_WINDOWS)
    summary = FeatureSummary(out_dir=tw_dir.parent, labelled=labels is not None)
    prev = [read_manifest(tw_dir), read_manifest(fw_dir)]
    if catalog.up_to_date(prev, {"inputs": inputs, "config": config}, force=force):
        summary.skipped_unchanged = True
        summary.tenant_rows, summary.fault_rows = (int(p.get("rows", 0)) for p in prev)  # type: ignore[union-attr]
        summary.tenant_positive = prev[0].get("positives", {})  # type: ignore[union-attr]
        summary.fault_positive = prev[1].get("positives", {})  # type: ignore[union-attr]
        return summary
    start = time.perf_counter()
    label_df = read_labels(labels) if labels else None
    tmap = captured_tenant_map(pkt_dir)
    dns = _read_message_table(dns_dir) if has_dns else None
    stratum = _read_message_table(stratum_dir) if has_stratum else None
    tw = tenant_windows(pq.read_table(flows_dir, columns=list(FLOW_COLUMNS)), spec, dns, stratum)
    fw = build_fault_windows(ws, fault_window_s, tmap=tmap, on_progress=on_progress)
    if label_df is not None:
        tw = label_tenant_windows(tw, label_df, spec.hop_s)
        fw = label_fault_windows(fw, label_df, tmap)
    common = {"inputs": inputs, "config": config}
    summary.tenant_positive, summary.fault_positive = _positives(tw), _positives(fw)
    _write(tw, tw_dir, {**common, "features": list(TENANT_FEATURES), "positives": summary.tenant_positive})
    _write(fw, fw_dir, {**common, "features": list(FAULT_FEATURES), "positives": summary.fault_positive})
    summary.tenant_rows, summary.fault_rows = len(tw), len(fw)
    summary.seconds = time.perf_counter() - start
    return summary


def _read_message_table(table_dir: Path) -> pa.Table | None:
    """A per-message table, dns or stratum (``None`` when the capture wrote no part: no message seen)."""
    if not any(table_dir.glob("*.parquet")):
        return None
    return pq.read_table(table_dir)


def read_feature_table(workspace: str | Path, table: catalog.Table | str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A features table (catalogue entry or name) and its manifest; a clear error when features have not run."""
    entry = catalog.table(table)
    d = catalog.path(workspace, entry)
    require_table(d, entry.dir)
    return pq.read_table(d).to_pandas(), read_manifest(d) or {}
