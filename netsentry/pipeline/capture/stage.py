"""Capture stage: capture files (or a live interface's spool) → ``WORKSPACE/packets/``, ``arp/``, ``dns/`` and
``stratum/``.

One Parquet part per input file in each table, row groups per read chunk, written into temporary
directories that replace the previous tables only when the run succeeds.
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
import pyarrow.compute as pc
import pyarrow.parquet as pq

from netsentry.pipeline.capture.reader import DEFAULT_CHUNK_BYTES, CaptureBatch, CaptureStats, read_capture
from netsentry.pipeline.capture.tenants import TenantMap, assign_packets, load_tenant_map, tenant_map_from_dict
from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.errors import CaptureFormatError, InputNotFoundError, NoUsableDataError
from netsentry.pipeline.core.io import atomic_dir, file_fingerprint, parquet_writer, read_manifest, write_manifest
from netsentry.pipeline.core.schemas import ARP, DNS, PACKETS, STRATUM

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
    arp_dir: Path | None = None

    @property
    def packets(self) -> int:
        return sum(s.packets for s in self.files)

    @property
    def arp(self) -> int:
        """ARP frames kept in the ARP table."""
        return sum(s.arp for s in self.files)

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


def _engine_reader(engine: str) -> Callable[..., Iterator[CaptureBatch]]:
    if engine == "fast":
        return read_capture
    if engine == "pyshark":
        from netsentry.pipeline.capture.pyshark_reader import read_capture_pyshark

        return read_capture_pyshark
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
    """Read every input into ``workspace/packets`` and ``workspace/arp``; ``on_progress(done_bytes, total_bytes)``.

    A file that cannot be read is reported and skipped; the run fails (NoUsableDataError) only when no
    file yields an IP packet or an ARP frame, leaving any previous tables intact.
    """
    opts = options or CaptureOptions()
    files = expand_inputs(inputs)
    tmap = load_tenant_map(opts.tenants) if opts.tenants else TenantMap.empty()
    out_dir, arp_dir = catalog.path(workspace, catalog.PACKETS), catalog.path(workspace, catalog.ARP)
    dns_dir, stratum_dir = catalog.path(workspace, catalog.DNS), catalog.path(workspace, catalog.STRATUM)
    fingerprints = [file_fingerprint(p) for p in files]
    config = _run_config(opts, tmap)
    summary = CaptureSummary(out_dir=out_dir, arp_dir=arp_dir)
    previous = read_manifest(out_dir)
    expected = {"inputs": fingerprints, "config": config}
    side_manifests = [read_manifest(d) for d in (arp_dir, dns_dir, stratum_dir)]
    if catalog.up_to_date([previous, *side_manifests], expected, force=opts.force):
        summary.skipped_unchanged = True
        summary.files = [CaptureStats(**_stats_fields(s)) for s in previous.get("files", [])]  # type: ignore[union-attr]
        return summary
    start = time.perf_counter()
    with (
        atomic_dir(out_dir) as tmp,
        atomic_dir(arp_dir) as arp_tmp,
        atomic_dir(dns_dir) as dns_tmp,
        atomic_dir(stratum_dir) as stratum_tmp,
    ):
        tmps = (tmp, arp_tmp, dns_tmp, stratum_tmp)
        parts, arp_parts, dns_parts, stratum_parts = _read_files(
            files, fingerprints, tmps, opts, tmap, summary, on_progress
        )
        if not parts and not arp_parts:
            reasons = "; ".join(summary.problems()) or "no IP packets or ARP frames in the input"
            raise NoUsableDataError(f"nothing usable read from {len(files)} file(s): {reasons}")
        if not parts:  # ARP frames only: an empty packets table, so later stages read no rows rather than no table
            parts.append(_empty_part(tmp, arp_parts[0]))
        summary.seconds = time.perf_counter() - start
        common = {"stage": "capture", **expected, "failed": summary.failed}
        write_manifest(
            tmp,
            {
                **common,
                "parts": parts,
                "files": [s.as_dict() for s in summary.files],
                "rows": sum(p["rows"] for p in parts),
                "malformed": sum(s.malformed for s in summary.files),
            },
        )
        arp_rows = sum(p["rows"] for p in arp_parts)
        write_manifest(arp_tmp, {**common, "table": "arp", "parts": arp_parts, "rows": arp_rows})
        dns_rows = sum(p["rows"] for p in dns_parts)
        write_manifest(dns_tmp, {**common, "table": "dns", "parts": dns_parts, "rows": dns_rows})
        stratum_rows = sum(p["rows"] for p in stratum_parts)
        write_manifest(stratum_tmp, {**common, "table": "stratum", "parts": stratum_parts, "rows": stratum_rows})
    return summary


def _read_files(
    files: list[Path],
    fingerprints: list[dict[str, Any]],
    tmp_dirs: tuple[Path, Path, Path, Path],
    opts: CaptureOptions,
    tmap: TenantMap,
    summary: CaptureSummary,
    on_progress: Callable[[int, int], None] | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Read each file into one part of the packets, ARP, DNS and stratum tables (each only when it has rows); their
    manifest entries. Files that cannot be read are noted in ``summary.failed``."""
    reader = _engine_reader(opts.engine)
    port_vnis = tmap.port_vnis if tmap.has_port_identities else None
    total = sum(f["bytes"] for f in fingerprints)
    if on_progress is not None:
        on_progress(0, total)
    done_before = 0
    parts: list[dict[str, Any]] = []
    arp_parts: list[dict[str, Any]] = []
    dns_parts: list[dict[str, Any]] = []
    stratum_parts: list[dict[str, Any]] = []
    for idx, path in enumerate(files):
        stats = CaptureStats(path=str(path))
        cp = opts.capture_point or path.name
        name = f"part-{idx:05d}.parquet"
        schemas = (PACKETS, ARP, DNS, STRATUM)
        out = tuple(_PartWriter(d / name, schema) for d, schema in zip(tmp_dirs, schemas, strict=True))
        base = done_before

        def progress(done: int, _base: int = base) -> None:
            if on_progress is not None:
                on_progress(_base + done, total)

        try:
            batches = reader(path, capture_point=cp, stats=stats, on_progress=progress, port_vnis=port_vnis)
            _write_parts(batches, out, tmap)
        except CaptureFormatError as e:
            for w in out:
                w.discard()
            summary.failed.append(str(e))
            log.info("skipped %s", e)
        done_before += fingerprints[idx]["bytes"]
        progress(fingerprints[idx]["bytes"])
        summary.files.append(stats)
        entry = {"part": name, "file": str(path), "capture_point": cp}
        if out[0].rows:
            parts.append(
                {**entry, "rows": out[0].rows, "first_ts_ns": stats.first_ts_ns, "last_ts_ns": stats.last_ts_ns}
            )
        for w, table_parts in ((out[1], arp_parts), (out[2], dns_parts), (out[3], stratum_parts)):
            if w.rows:
                table_parts.append({**entry, "rows": w.rows, "first_ts_ns": w.first_ts_ns, "last_ts_ns": w.last_ts_ns})
    return parts, arp_parts, dns_parts, stratum_parts


def _empty_part(tmp: Path, like: dict[str, Any]) -> dict[str, Any]:
    """Write a packets part with no rows for the file of ARP part ``like``; its manifest entry."""
    parquet_writer(tmp / like["part"], PACKETS).close()
    return {**like, "rows": 0, "first_ts_ns": None, "last_ts_ns": None}


def _stats_fields(d: dict[str, Any]) -> dict[str, Any]:
    known = set(CaptureStats.__dataclass_fields__)
    out = {k: v for k, v in d.items() if k in known}
    out["linktypes"] = set(out.get("linktypes", []))
    return out


class _PartWriter:
    """One Parquet part of a table, created on its first non-empty table; counts rows and their time span."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path, self.schema = path, schema
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0
        self.first_ts_ns: int | None = None
        self.last_ts_ns: int | None = None

    def write(self, t: pa.Table) -> None:
        if self.writer is None:
            self.writer = parquet_writer(self.path, self.schema)
        self.writer.write_table(t, row_group_size=1 << 20)
        self.rows += t.num_rows
        lo, hi = pc.min_max(t["ts_ns"]).values()
        self.first_ts_ns = lo.as_py() if self.first_ts_ns is None else min(self.first_ts_ns, lo.as_py())
        self.last_ts_ns = hi.as_py() if self.last_ts_ns is None else max(self.last_ts_ns, hi.as_py())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def discard(self) -> None:
        """Forget a part whose file could not be read to its end."""
        self.close()
        self.path.unlink(missing_ok=True)
        self.rows = 0


def _write_parts(batches: Iterator[CaptureBatch], out: tuple[_PartWriter, ...], tmap: TenantMap) -> None:
    """Write a file's packet, ARP, DNS and stratum tables to its parts (each created on its first non-empty table)."""
    packets, arp, dns, stratum = out
    try:
        for b in batches:
            if b.packets is not None and b.packets.num_rows:
                packets.write(assign_packets(b.packets, tmap) if tmap.config.vpcs else b.packets)
            if b.arp is not None and b.arp.num_rows:
                arp.write(b.arp)
            if b.dns is not None and b.dns.num_rows:
                dns.write(b.dns)
            if b.stratum is not None and b.stratum.num_rows:
                stratum.write(b.stratum)
    finally:
        for w in out:
            w.close()
