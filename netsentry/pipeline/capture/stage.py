"""Capture stage: capture files (or a live interface's spool) → ``WORKSPACE/packets/``.

One Parquet part per input file, row groups per read chunk, written into a temporary
directory that replaces the previous table only when the run succeeds.
"""

from __future__ import annotations

import glob
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from netsentry.pipeline.capture.reader import DEFAULT_CHUNK_BYTES, CaptureStats, read_packets
from netsentry.pipeline.capture.tenants import TenantMap, assign_packets, load_tenant_map, tenant_map_from_dict
from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.errors import CaptureFormatError, InputNotFoundError, NoUsableDataError
from netsentry.pipeline.core.io import atomic_dir, file_fingerprint, parquet_writer, read_manifest, write_manifest
from netsentry.pipeline.core.schemas import PACKETS

log = logging.getLogger(__name__)

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp", ".pcap.gz", ".pcapng.gz")


def captured_tenant_map(pkt_dir: str | Path) -> TenantMap:
    """The tenant map a packets table was captured with (kept in its manifest; empty when none was given)."""
    manifest = read_manifest(pkt_dir) or {}
    return tenant_map_from_dict(manifest.get("config", {}).get("tenants"), source=str(pkt_dir))


@dataclass
class CaptureOptions:
    """How to read captures. ``capture_point`` overrides the per-file default (the file name)."""

    engine: str = "fast"
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    tenants: Path | None = None
    capture_point: str | None = None
    force: bool = False


@dataclass
class CaptureSummary:
    """What a capture run read, skipped and wrote."""

    files: list[CaptureStats] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped_unchanged: bool = False
    seconds: float = 0.0
    out_dir: Path | None = None

    @property
    def packets(self) -> int:
        return sum(s.packets for s in self.files)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.files)

    def problems(self) -> list[str]:
        return [p for s in self.files for p in s.problems()] + self.failed


def _is_capture_name(p: Path) -> bool:
    return p.name.lower().endswith(CAPTURE_SUFFIXES)


def expand_inputs(inputs: list[str | Path]) -> list[Path]:
    """Files, directories (searched recursively for capture files) and globs → sorted file list."""
    if not inputs:
        raise InputNotFoundError("no input given; name capture files, directories or globs")
    out: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and _is_capture_name(q))
            if not found:
                raise InputNotFoundError(
                    f"directory holds no capture files ({', '.join(CAPTURE_SUFFIXES)})", path=str(p)
                )
            out.extend(found)
        elif p.is_file():
            out.append(p)
        elif glob.has_magic(str(raw)):
            found = sorted(Path(q) for q in glob.glob(str(raw), recursive=True) if Path(q).is_file())
            if not found:
                raise InputNotFoundError("glob matches no file", path=str(raw))
            out.extend(found)
        else:
            raise InputNotFoundError("no such file or directory", path=str(p))
    seen: set[Path] = set()
    unique = []
    for p in out:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(p)
    return unique


def _engine_reader(engine: str) -> Callable[..., Iterator[pa.Table]]:
    if engine == "fast":
        return read_packets
    if engine == "pyshark":
        from netsentry.pipeline.capture.pyshark_reader import read_packets_pyshark

        return read_packets_pyshark
    raise CaptureFormatError(f"unknown engine {engine!r}; expected 'fast' or 'pyshark'")


def _run_config(opts: CaptureOptions, tmap: TenantMap) -> dict[str, Any]:
    return {
        "engine": opts.engine,
        "capture_point": opts.capture_point,
        "tenants": tmap.to_yaml_dict(),
    }


def run_capture(
    inputs: list[str | Path],
    workspace: str | Path,
    options: CaptureOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> CaptureSummary:
    """Read every input into ``workspace/packets``; ``on_progress(done_bytes, total_bytes)``.

    A file that cannot be read is reported and skipped; the run fails (NoUsableDataError)
    only when no file yields a packet, leaving any previous table intact.
    """
    opts = options or CaptureOptions()
    files = expand_inputs(inputs)
    tmap = load_tenant_map(opts.tenants) if opts.tenants else TenantMap.empty()
    reader = _engine_reader(opts.engine)
    out_dir = catalog.path(workspace, catalog.PACKETS)
    fingerprints = [file_fingerprint(p) for p in files]
    config = _run_config(opts, tmap)
    summary = CaptureSummary(out_dir=out_dir)
    previous = read_manifest(out_dir)
    if catalog.up_to_date([previous], {"inputs": fingerprints, "config": config}, force=opts.force):
        summary.skipped_unchanged = True
        summary.files = [CaptureStats(**_stats_fields(s)) for s in previous.get("files", [])]  # type: ignore[union-attr]
        return summary
    total = sum(f["bytes"] for f in fingerprints)
    if on_progress is not None:
        on_progress(0, total)
    done_before = 0
    start = time.perf_counter()
    parts: list[dict[str, Any]] = []
    with atomic_dir(out_dir) as tmp:
        for idx, path in enumerate(files):
            stats = CaptureStats(path=str(path))
            cp = opts.capture_point or path.name
            part = tmp / f"part-{idx:05d}.parquet"
            base = done_before

            def progress(done: int, _base: int = base) -> None:
                if on_progress is not None:
                    on_progress(_base + done, total)

            try:
                rows = _write_part(reader(path, capture_point=cp, stats=stats, on_progress=progress), part, tmap)
            except CaptureFormatError as e:
                part.unlink(missing_ok=True)
                summary.failed.append(str(e))
                log.info("skipped %s", e)
                rows = 0
            done_before += fingerprints[idx]["bytes"]
            progress(fingerprints[idx]["bytes"])
            summary.files.append(stats)
            if rows:
                parts.append(
                    {
                        "part": part.name,
                        "file": str(path),
                        "capture_point": cp,
                        "rows": rows,
                        "first_ts_ns": stats.first_ts_ns,
                        "last_ts_ns": stats.last_ts_ns,
                    }
                )
        if not parts:
            reasons = "; ".join(summary.problems()) or "no IP packets in the input"
            raise NoUsableDataError(f"nothing usable read from {len(files)} file(s): {reasons}")
        summary.seconds = time.perf_counter() - start
        write_manifest(
            tmp,
            {
                "stage": "capture",
                "inputs": fingerprints,
                "config": config,
                "parts": parts,
                "files": [s.as_dict() for s in summary.files],
                "failed": summary.failed,
                "rows": sum(p["rows"] for p in parts),
                "malformed": sum(s.malformed for s in summary.files),
            },
        )
    return summary


def _stats_fields(d: dict[str, Any]) -> dict[str, Any]:
    known = set(CaptureStats.__dataclass_fields__)
    out = {k: v for k, v in d.items() if k in known}
    out["linktypes"] = set(out.get("linktypes", []))
    return out


def _write_part(tables: Iterator[pa.Table], part: Path, tmap: TenantMap) -> int:
    """Write packet tables to one Parquet file (created on the first non-empty table)."""
    writer: pq.ParquetWriter | None = None
    rows = 0
    try:
        for t in tables:
            if t.num_rows == 0:
                continue
            if tmap.config.vpcs:
                t = assign_packets(t, tmap)
            if writer is None:
                writer = parquet_writer(part, PACKETS)
            writer.write_table(t, row_group_size=1 << 20)
            rows += t.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows
