"""Fast offline reader: pcap / pcapng (optionally gzip-compressed) → batches of IP packets and ARP frames.

The file is read in fixed-size chunks, so memory stays bounded whatever the file size.
Records are found and decoded by compiled walkers (:mod:`recwalk`, :mod:`decode`);
no Python object is built per packet. Problems are counted in :class:`CaptureStats`:
complete packets before a corruption are kept, a malformed packet is skipped and counted.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from netsentry.pipeline.capture import decode as dec
from netsentry.pipeline.capture import dns as dns_summary
from netsentry.pipeline.capture import recwalk as rw
from netsentry.pipeline.capture.mining import stratum_rows
from netsentry.pipeline.core.errors import CaptureFormatError, InputNotFoundError
from netsentry.pipeline.core.schemas import ARP, PACKETS, ip16_array

PortVnis = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(vni, src_mac, src_ip16, dst_mac, dst_ip16) → vni with a port's network filled in where it was 0."""

DEFAULT_CHUNK_BYTES = 32 << 20
DEFAULT_BATCH_RECORDS = 1 << 18

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": (False, 1000),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (True, 1000),
    b"\x4d\x3c\xb2\xa1": (False, 1),  # little-endian, nanoseconds
    b"\xa1\xb2\x3c\x4d": (True, 1),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"
# A gzip stream that ends early (a partial copy) or is corrupt raises these while being read.
STREAM_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


@dataclass
class CaptureStats:
    """What reading one capture produced and what it had to skip."""

    path: str
    format: str = ""
    records: int = 0
    packets: int = 0
    bytes: int = 0
    non_ip: int = 0
    arp: int = 0
    malformed: int = 0
    unsupported_linktype: int = 0
    fragments: int = 0
    undeclared_interface: int = 0
    truncated_tail_bytes: int = 0
    corrupt_offset: int | None = None
    stream_error: str | None = None
    linktypes: set[int] = field(default_factory=set)
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None

    @property
    def usable(self) -> bool:
        return self.packets > 0 or self.arp > 0

    def problems(self) -> list[str]:
        """One line per problem, each naming the file and what was wrong."""
        out = []
        if self.corrupt_offset is not None:
            out.append(
                f"{self.path}: corrupt record header at byte {self.corrupt_offset}; "
                f"stopped there, kept the {self.records} records before it"
            )
        if self.stream_error:
            out.append(
                f"{self.path}: compressed stream damaged ({self.stream_error}); "
                f"kept the {self.records} records read before it"
            )
        if self.truncated_tail_bytes:
            out.append(
                f"{self.path}: last record truncated ({self.truncated_tail_bytes} bytes at end of file); skipped it"
            )
        if self.malformed:
            out.append(f"{self.path}: {self.malformed} malformed packet(s) skipped (headers cut short or inconsistent)")
        if self.unsupported_linktype:
            lts = ", ".join(str(x) for x in sorted(self.linktypes - set(dec.SUPPORTED_LINKTYPES)))
            out.append(f"{self.path}: {self.unsupported_linktype} packet(s) with unsupported link type {lts} skipped")
        if self.undeclared_interface:
            out.append(f"{self.path}: {self.undeclared_interface} packet(s) naming an undeclared interface skipped")
        return out

    def count_kept(self, cols: dict[str, np.ndarray]) -> None:
        """Account for a batch of kept packets (packet columns, non-empty)."""
        self.packets += len(cols["ts_ns"])
        self.bytes += int(cols["frame_len"].sum(dtype=np.int64))
        self.fragments += int(np.count_nonzero(cols["frag"]))
        lo, hi = int(cols["ts_ns"].min()), int(cols["ts_ns"].max())
        self.first_ts_ns = lo if self.first_ts_ns is None else min(self.first_ts_ns, lo)
        self.last_ts_ns = hi if self.last_ts_ns is None else max(self.last_ts_ns, hi)

    def count_non_ip(self, frames: int, arp_rows: int) -> None:
        """Account for frames without an IP packet, ``arp_rows`` of them kept as ARP rows (the first is a total:
        ``non_ip`` counts every frame that carries no IP, ``arp`` those the ARP table keeps)."""
        self.non_ip += frames
        self.arp += arp_rows

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["linktypes"] = sorted(self.linktypes)
        return d


def _open(path: Path) -> BinaryIO:
    with path.open("rb") as f:
        head = f.read(2)
    if head == GZIP_MAGIC:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = f.read(n - len(data))
        if not more:
            break
        data += more
    return data


def _fill(f: BinaryIO, view: memoryview, stats: CaptureStats) -> int:
    """Read into ``view`` until full or end of file. A damaged compressed stream reads as end of
    file (noted in ``stats``); ``readinto1`` makes one raw read per call, so no byte it gave is lost."""
    got = 0
    while got < len(view):
        try:
            n = f.readinto1(view[got:])
        except STREAM_ERRORS as exc:
            stats.stream_error = str(exc) or type(exc).__name__
            break
        if not n:
            break
        got += n
    return got


class _Walker:
    """Binds one file's format state to the compiled record walker."""

    def __init__(self, path: Path, header: bytes) -> None:
        magic = header[:4]
        if not header:
            raise CaptureFormatError("empty file; expected a pcap or pcapng capture", path=str(path))
        if magic == PCAPNG_MAGIC:
            self.format = "pcapng"
            self.header_len = 0
            self.state = rw.new_pcapng_state()
            return
        if magic in PCAP_MAGICS:
            if len(header) < 24:
                raise CaptureFormatError(f"pcap file header truncated ({len(header)} of 24 bytes)", path=str(path))
            swap, ts_mul = PCAP_MAGICS[magic]
            order = ">" if swap else "<"
            snaplen = int(np.frombuffer(header[16:20], dtype=f"{order}u4")[0])
            linktype = int(np.frombuffer(header[20:24], dtype=f"{order}u4")[0]) & 0xFFFF
            if linktype not in dec.SUPPORTED_LINKTYPES:
                raise CaptureFormatError(
                    f"link type {linktype} is not supported; expected one of "
                    + ", ".join(f"{k} ({v})" for k, v in sorted(dec.SUPPORTED_LINKTYPES.items())),
                    path=str(path),
                )
            self.format = "pcap"
            self.header_len = 24
            self.swap, self.ts_mul, self.linktype = swap, ts_mul, linktype
            self.max_caplen = max(rw.MAX_RECORD, snaplen if snaplen < (1 << 24) else 0)
            return
        if magic in (b"\x34\xcd\xb2\xa1", b"\xa1\xb2\xcd\x34"):
            raise CaptureFormatError(
                "modified (Kuznetzov) pcap is not supported; convert it with editcap", path=str(path)
            )
        raise CaptureFormatError(
            f"not a pcap or pcapng capture (starts with 0x{magic.hex() or 'nothing'})", path=str(path)
        )

    def walk(self, buf: np.ndarray, pos: int, end: int, out: tuple[np.ndarray, ...]) -> tuple[int, int, int]:
        if self.format == "pcap":
            return rw.walk_pcap(buf, pos, end, self.swap, self.ts_mul, self.linktype, self.max_caplen, *out)
        return rw.walk_pcapng(buf, pos, end, *self.state, *out)

    @property
    def undeclared_interface(self) -> int:
        return int(self.state[0][rw.ST_BAD_IFACE]) if self.format == "pcapng" else 0


def iter_records(
    path: str | Path,
    stats: CaptureStats,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    batch_records: int = DEFAULT_BATCH_RECORDS,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[np.ndarray, tuple[np.ndarray, ...], int]]:
    """Yield ``(buffer, record arrays, count)`` for successive runs of complete records.

    The buffer is reused: consume each yield before asking for the next.
    """
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError("no such file", path=str(path))
    with _open(path) as f:
        try:
            header = _read_exact(f, 24)
        except STREAM_ERRORS as exc:
            msg = f"compressed stream unreadable at its start ({exc})"
            raise CaptureFormatError(msg, path=str(path)) from exc
        walker = _Walker(path, header)
        stats.format = walker.format
        buf = np.empty(max(chunk_bytes, 1 << 16), dtype=np.uint8)
        leftover = header[walker.header_len :]
        valid = len(leftover)
        buf[:valid] = np.frombuffer(leftover, dtype=np.uint8)
        out = rw.record_arrays(batch_records)
        consumed_before = walker.header_len  # file offset of buf[0]
        eof = False
        while True:
            if not eof and valid < len(buf):
                got = _fill(f, memoryview(buf)[valid:], stats)
                if not got:
                    eof = True
                else:
                    valid += got
            pos = 0
            while True:
                n, stop, reason = walker.walk(buf, pos, valid, out)
                if n:
                    yield buf, out, n
                pos = stop
                if reason != rw.OUT_FULL:
                    break
            if reason == rw.CORRUPT:
                stats.corrupt_offset = consumed_before + pos
                break
            # NEED_MORE: keep the partial record and read on
            rest = valid - pos
            if eof:
                stats.truncated_tail_bytes = rest
                break
            if pos == 0 and valid == len(buf):  # one record larger than the buffer
                bigger = np.empty(len(buf) * 2, dtype=np.uint8)
                bigger[:valid] = buf[:valid]
                buf = bigger
                continue
            buf[:rest] = buf[pos:valid]
            consumed_before += pos
            valid = rest
            if on_progress is not None:
                on_progress(consumed_before)
        stats.undeclared_interface = walker.undeclared_interface
        if on_progress is not None:
            on_progress(consumed_before + valid)


def _dict_column(value: str, n: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(np.zeros(n, dtype=np.int32), pa.array([value], pa.string()))


def decode_records(buf: np.ndarray, rec: tuple[np.ndarray, ...], n: int) -> dict[str, np.ndarray]:
    """Decode ``n`` walked records into packet and ARP columns (status column included, unfiltered)."""
    off, cap, orig, ts, lt = (a[:n] for a in rec)
    cols = dec.output_arrays(n)
    dec.decode(buf, off, cap, orig, lt, *cols.values())
    cols["ts_ns"] = ts.copy()
    cols["frame_len"] = orig.astype(np.uint32)
    cols["cap_len"] = cap.astype(np.uint32)
    cols["linktype"] = lt.copy()
    return cols


def columns_to_table(cols: dict[str, np.ndarray], capture_point: str) -> pa.Table:
    """Packet columns (already filtered to kept packets) → a table in the packets contract.

    ``tenant`` and ``vm`` are set to ``external``; :mod:`netsentry.pipeline.capture.tenants` fills them.
    """
    n = len(cols["ts_ns"])
    arrays = []
    for fld in PACKETS:
        name = fld.name
        if name == "capture_point":
            arrays.append(_dict_column(capture_point, n))
        elif name in ("tenant", "vm"):
            arrays.append(_dict_column("external", n))
        elif name in ("src_ip", "dst_ip"):
            arrays.append(ip16_array(cols[name]))
        else:
            arrays.append(pa.array(cols[name], type=fld.type))
    return pa.Table.from_arrays(arrays, schema=PACKETS)


def arp_table(cols: dict[str, np.ndarray], capture_point: str) -> pa.Table:
    """ARP columns (``ts_ns``, ``vni``, ``vlan``, ``arp_op``, the MACs, ``sender_ip``/``target_ip`` as ``(n, 16)``
    uint8), already filtered to ARP frames → a table in the ARP contract."""
    n = len(cols["ts_ns"])
    arrays: list[pa.Array] = []
    for fld in ARP:
        name = fld.name
        if name == "capture_point":
            arrays.append(_dict_column(capture_point, n))
        elif name in ("sender_ip", "target_ip"):
            arrays.append(ip16_array(cols[name]))
        elif name == "op":
            arrays.append(pa.array(cols["arp_op"], type=fld.type))
        elif name == "gratuitous":
            arrays.append(pa.array((cols["sender_ip"] == cols["target_ip"]).all(axis=1)))
        else:
            arrays.append(pa.array(cols[name], type=fld.type))
    return pa.Table.from_arrays(arrays, schema=ARP)


@dataclass
class CaptureBatch:
    """What one run of records gave: its IP packets and its ARP frames (``None`` where there are none)."""

    packets: pa.Table | None
    arp: pa.Table | None
    dns: pa.Table | None = None
    stratum: pa.Table | None = None


def _arp_rows(cols: dict[str, np.ndarray], arp_cols: dict[str, np.ndarray], is_arp: np.ndarray, cp: str) -> pa.Table:
    """The ARP frames of a decoded batch as a table (``is_arp``: their status mask)."""
    picked = {k: v[is_arp] for k, v in arp_cols.items()}
    picked.update({k: cols[k][is_arp] for k in ("ts_ns", "vni", "vlan")})
    return arp_table(picked, cp)


def _dns_rows(buf: np.ndarray, rec: tuple[np.ndarray, ...], n: int, cols: dict[str, np.ndarray], ok: np.ndarray,
              cp: str) -> pa.Table | None:  # fmt: skip
    """The DNS messages of a decoded batch (``ok``: its kept-packet mask) as a table, or ``None``."""
    is_dns = dns_summary.dns_mask(cols, ok)
    if not is_dns.any():
        return None
    picked = {k: cols[k][is_dns] for k in dns_summary.PACKET_COLUMNS}
    rec_end = (rec[0][:n] + rec[1][:n])[is_dns]
    return dns_summary.dns_rows(buf, picked, rec_end, cp)


def read_capture(
    path: str | Path,
    *,
    capture_point: str | None = None,
    stats: CaptureStats | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    batch_records: int = DEFAULT_BATCH_RECORDS,
    on_progress: Callable[[int], None] | None = None,
    port_vnis: PortVnis | None = None,
) -> Iterator[CaptureBatch]:
    """Stream a capture file as batches of packet and ARP tables (one per run of records), updating ``stats``.

    ``port_vnis`` (a tenant map's :meth:`~netsentry.pipeline.capture.tenants.TenantMap.port_vnis`) gives frames
    without a VNI their port's network, before any table is built."""
    path = Path(path)
    stats = stats if stats is not None else CaptureStats(path=str(path))
    cp = capture_point or path.name
    for buf, rec, n in iter_records(
        path, stats, chunk_bytes=chunk_bytes, batch_records=batch_records, on_progress=on_progress
    ):
        cols = decode_records(buf, rec, n)
        if port_vnis is not None:
            cols["vni"] = port_vnis(cols["vni"], cols["src_mac"], cols["src_ip"], cols["dst_mac"], cols["dst_ip"])
        status = cols.pop("status")
        lts = cols.pop("linktype")
        arp_cols = {k: cols.pop(k) for k in dec.ARP_OUTPUTS}
        stats.records += n
        counts = np.bincount(status, minlength=dec.N_STATUS)
        stats.count_non_ip(int(counts[dec.NON_IP] + counts[dec.ARP]), int(counts[dec.ARP]))
        stats.malformed += int(counts[dec.MALFORMED])
        stats.unsupported_linktype += int(counts[dec.BAD_LINKTYPE])
        stats.linktypes.update(int(x) for x in np.unique(lts))
        arp = _arp_rows(cols, arp_cols, status == dec.ARP, cp) if counts[dec.ARP] else None
        keep = status == dec.OK
        dns = _dns_rows(buf, rec, n, cols, keep, cp)
        stratum = stratum_rows(buf, cols, rec[0][:n] + rec[1][:n], keep, cp)
        cols.pop("l4_at")
        if not keep.all():
            cols = {k: v[keep] for k, v in cols.items()}
        packets = None
        if keep.any():
            stats.count_kept(cols)
            packets = columns_to_table(cols, cp)
        if packets is not None or arp is not None or dns is not None or stratum is not None:
            yield CaptureBatch(packets, arp, dns, stratum)


def read_packets(
    path: str | Path,
    *,
    capture_point: str | None = None,
    stats: CaptureStats | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    batch_records: int = DEFAULT_BATCH_RECORDS,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[pa.Table]:
    """Stream a capture file as packet tables only (as :func:`read_capture`; ARP frames are counted, not kept)."""
    batches = read_capture(
        path,
        capture_point=capture_point,
        stats=stats,
        chunk_bytes=chunk_bytes,
        batch_records=batch_records,
        on_progress=on_progress,
    )
    for batch in batches:
        if batch.packets is not None:
            yield batch.packets
