"""Workspace tables on disk: atomic directory writes, manifests, input fingerprints."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from netsentry import __version__
from netsentry.pipeline.core.errors import InputNotFoundError

MANIFEST = "_manifest.json"
_FINGERPRINT_SPAN = 1 << 20


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """Cheap, stable identity of an input file: size, mtime and sha256 of its first and last MiB."""
    p = Path(path)
    st = p.stat()
    h = hashlib.sha256()
    with p.open("rb") as f:
        h.update(f.read(_FINGERPRINT_SPAN))
        if st.st_size > 2 * _FINGERPRINT_SPAN:
            f.seek(-_FINGERPRINT_SPAN, os.SEEK_END)
            h.update(f.read(_FINGERPRINT_SPAN))
    return {"path": str(p), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256_head_tail": h.hexdigest()}


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces ``final`` only if the block succeeds.

    An interrupted or failed run leaves the previous ``final`` untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_manifest(table_dir: str | Path, manifest: dict[str, Any]) -> None:
    """Write ``_manifest.json`` (adds the package version)."""
    body = {"netsentry_version": __version__, **manifest}
    atomic_write_text(Path(table_dir) / MANIFEST, json.dumps(body, indent=2, sort_keys=True, default=str))


def manifest_digest(manifest: dict[str, Any] | None) -> str:
    """sha256 of a manifest's canonical JSON: what a later stage records as its input's identity."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest()


def read_manifest(table_dir: str | Path) -> dict[str, Any] | None:
    """The manifest of a table directory, or ``None`` when there is none."""
    p = Path(table_dir) / MANIFEST
    if not p.exists():
        return None
    return json.loads(p.read_text())


STATS_COLUMNS = ("ts_ns", "first_seen_ns", "last_seen_ns", "capture_point", "tenant", "vni")
"""Columns whose row-group min/max are kept (time and scope filters); statistics on every
column cost a quarter of the write time and serve no query."""


def parquet_writer(path: str | Path, schema: pa.Schema, compression: str = "lz4") -> pq.ParquetWriter:
    """A Parquet writer for a stage table: lz4 (fast), dictionary encoding only where the schema
    asks for it (trying it on every numeric column costs more than it saves), statistics only on
    :data:`STATS_COLUMNS`."""
    dict_cols = [f.name for f in schema if pa.types.is_dictionary(f.type)]
    stats = [n for n in STATS_COLUMNS if n in schema.names]
    return pq.ParquetWriter(path, schema, compression=compression, use_dictionary=dict_cols, write_statistics=stats)


def table_parts(table_dir: str | Path) -> list[Path]:
    """Parquet files of a table directory, sorted by name."""
    return sorted(Path(table_dir).glob("*.parquet"))


def require_table(table_dir: str | Path, what: str) -> list[Path]:
    """Parts of a workspace table, or a clear error saying which stage makes it."""
    d = Path(table_dir)
    parts = table_parts(d) if d.is_dir() else []
    if not parts:
        raise InputNotFoundError(f"no {what} table here; run the stage that writes it first", path=str(d))
    return parts
