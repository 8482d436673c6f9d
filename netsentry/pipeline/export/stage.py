"""Export a workspace table to share it: Parquet or CSV, optionally with every IP address pseudonymized.

Streams the table in record batches (bounded memory whatever its size) and writes the file atomically.
CSV renders stored addresses (``binary(16)``) as text; Parquet keeps the table's schema.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.errors import ConfigError, InputNotFoundError
from netsentry.pipeline.core.io import require_table
from netsentry.pipeline.core.pseudonym import Pseudonymizer
from netsentry.pipeline.core.schemas import IP16, MAC, ip_text, mac_text

FORMATS = ("parquet", "csv")
BATCH_ROWS = 1 << 18


@dataclass
class ExportSummary:
    """What was exported where."""

    table: str
    out: Path
    rows: int
    pseudonymized: bool


def _csv_ready(t: pa.Table) -> pa.Table:
    """Addresses as text (IPs, and MACs: ``*_mac`` columns), dictionaries decoded (CSV has neither binary nor
    dictionary types)."""
    cols, fields = [], []
    for f, col in zip(t.schema, t.columns, strict=True):
        if f.type == IP16:
            col, f = pa.chunked_array([pa.array(ip_text(col), pa.string())]), pa.field(f.name, pa.string())
        elif f.type == MAC and f.name.endswith("_mac"):
            col, f = pa.chunked_array([pa.array(mac_text(col), pa.string())]), pa.field(f.name, pa.string())
        elif pa.types.is_dictionary(f.type):
            col, f = col.cast(f.type.value_type), pa.field(f.name, f.type.value_type)
        cols.append(col)
        fields.append(f)
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def export_table(
    workspace: str | Path,
    table: str,
    out: str | Path,
    *,
    fmt: str = "parquet",
    pseudonymizer: Pseudonymizer | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExportSummary:
    """Write ``WORKSPACE/<table>`` to ``out`` (``parquet`` or ``csv``), pseudonymized when given one."""
    if table not in catalog.TABLES:
        raise ConfigError(f"unknown table {table!r}; expected one of {', '.join(catalog.TABLES)}")
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected parquet or csv")
    src = catalog.path(workspace, table)
    if table == "findings":
        parts = [src / "findings.parquet"]
        if not parts[0].is_file():
            raise InputNotFoundError("no findings: run `netsentry inspect` first", path=str(parts[0]))
    else:
        parts = require_table(src, table)
    dataset = ds.dataset([str(p) for p in parts], format="parquet")
    total = dataset.count_rows()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    rows = 0
    writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
    try:
        for batch in dataset.to_batches(batch_size=BATCH_ROWS):
            t = pa.Table.from_batches([batch])
            if pseudonymizer is not None:
                t = pseudonymizer.table(t)
            if fmt == "csv":
                t = _csv_ready(t)
            if writer is None:
                writer = pq.ParquetWriter(tmp, t.schema) if fmt == "parquet" else pacsv.CSVWriter(tmp, t.schema)
            writer.write_table(t)
            rows += t.num_rows
            if on_progress:
                on_progress(rows, total)
        if writer is None:  # an empty table still gets its header / schema
            schema = dataset.schema if fmt == "parquet" else _csv_ready(dataset.schema.empty_table()).schema
            writer = pq.ParquetWriter(tmp, schema) if fmt == "parquet" else pacsv.CSVWriter(tmp, schema)
        writer.close()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return ExportSummary(table, out, rows, pseudonymizer is not None)
