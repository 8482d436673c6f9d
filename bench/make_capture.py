"""Build a large benchmark capture from real traces in the shared data directory.

Six real Ethernet traces (FTP, HTTP, Modbus, SMB2, a spoofed SYN flood, SSH with retransmissions)
are merged by time into one *copy* (each trace starts at the copy's start). The output repeats the
copy back to back, each copy shifted in time by the copy's span plus one second, with the 2nd and
3rd octets of every IPv4 source and destination XORed with the copy index (copy 0 is unchanged),
so every copy's conversations are distinct flows. Nothing else is rewritten: IP/TCP checksums go
stale, which no reader under test checks. The last copy is cut to hit the requested packet count,
so the capture for N packets is a prefix of the capture for any M > N packets.

Output: classic little-endian microsecond pcap, Ethernet link type, under ``bench/out/`` (cached
by parameters)::

    python -m bench.make_capture --packets 1000000
    python -m bench.make_capture --size 2GB
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OUT_DIR = Path(__file__).resolve().parent / "out"
SOURCES = (
    "zeek/traces/ftp/cwd-navigation.pcap",
    "zeek/traces/http/bro.org.pcap",
    "zeek/traces/modbus/modbusBig.pcap",
    "zeek/traces/smb/smb2.pcap",
    "stopddos/pkt.TCP.synflood.spoofed.pcap",
    "zeek/traces/tcp/ssh-dups.pcap",
)
FORMAT_VERSION = 1  # bump when the construction changes, so cached files are rebuilt
BASE_EPOCH_S = 1_704_067_200  # 2024-01-01T00:00:00Z: start of copy 0
GAP_S = 1  # seconds between the end of one copy and the start of the next
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262_144, 1)  # usec, Ethernet

_MAGICS = {b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
           b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1)}  # fmt: skip


class MissingDataError(RuntimeError):
    """The shared data directory (or one of its traces) is not there."""


@dataclass
class Template:
    """One copy: the merged records of all sources, plus where to patch them per copy."""

    data: np.ndarray  # uint8: the copy's records (16-byte headers included), time-ordered
    rec_end: np.ndarray  # int64: end offset in ``data`` of each record
    sec_idx: np.ndarray  # int64 (n, 4): byte positions of each record's ts_sec field
    sec_rel: np.ndarray  # int64: each record's seconds since the copy's start
    ip_hi_idx: np.ndarray  # int64: positions of the 2nd octet of IPv4 src and dst addresses
    ip_lo_idx: np.ndarray  # int64: positions of the 3rd octet
    stride_s: int  # seconds between copy starts
    key: str  # hash of the sources and construction version

    @property
    def packets(self) -> int:
        return len(self.rec_end)

    @property
    def nbytes(self) -> int:
        return len(self.data)


def _read_source(path: Path) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
    """(file bytes, record offsets, record lengths incl. header, timestamps in ns) of an Ethernet pcap."""
    raw = path.read_bytes()
    if raw[:4] not in _MAGICS or len(raw) < 24:
        raise MissingDataError(f"{path}: not a classic pcap file")
    order, ts_mul = _MAGICS[raw[:4]]
    linktype = struct.unpack_from(order + "I", raw, 20)[0] & 0xFFFF
    if linktype != 1:
        raise MissingDataError(f"{path}: link type {linktype}, expected Ethernet (1)")
    hdr = struct.Struct(order + "IIII")
    offs, lens, ts = [], [], []
    pos, end = 24, len(raw)
    while pos + 16 <= end:
        sec, frac, incl, _orig = hdr.unpack_from(raw, pos)
        if pos + 16 + incl > end:
            break  # truncated tail record: drop it
        offs.append(pos)
        lens.append(16 + incl)
        ts.append(sec * 1_000_000_000 + frac * ts_mul)
        pos += 16 + incl
    return raw, np.array(offs, np.int64), np.array(lens, np.int64), np.array(ts, np.int64)


def _ipv4_header_pos(data: np.ndarray, starts: np.ndarray, caplen: np.ndarray) -> np.ndarray:
    """Offset of the IPv4 header of each Ethernet frame starting at ``starts`` (-1 when none)."""
    ip = np.full(len(starts), -1, np.int64)
    ok = caplen >= 14 + 20
    et = np.zeros(len(starts), np.int64)
    et[ok] = (data[starts[ok] + 12].astype(np.int64) << 8) | data[starts[ok] + 13]
    ip[ok & (et == 0x0800)] = starts[ok & (et == 0x0800)] + 14
    tagged = ok & ((et == 0x8100) | (et == 0x88A8)) & (caplen >= 18 + 20)
    et2 = np.zeros(len(starts), np.int64)
    et2[tagged] = (data[starts[tagged] + 16].astype(np.int64) << 8) | data[starts[tagged] + 17]
    ip[tagged & (et2 == 0x0800)] = starts[tagged & (et2 == 0x0800)] + 18
    has = ip >= 0
    has[has] = (data[ip[has]] >> 4) == 4
    ip[~has] = -1
    return ip


def load_template(data_dir: Path = SHARED_DATA) -> Template:
    """Read the source traces and merge them by time into one copy's worth of records."""
    if not data_dir.is_dir():
        raise MissingDataError(
            f"shared data directory not found: {data_dir} (the benchmark builds its capture from the real "
            "traces there; see ../shared/data/README.md)"
        )
    paths = [data_dir / s for s in SOURCES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise MissingDataError("missing source trace(s): " + ", ".join(missing))
    blobs, offs, lens, rel = [], [], [], []
    base = 0
    h = hashlib.sha256(f"v{FORMAT_VERSION}".encode())
    for p in paths:
        raw, o, ln, ts = _read_source(p)
        h.update(f"{p.name}:{len(raw)}".encode())
        blobs.append(np.frombuffer(raw, np.uint8))
        offs.append(o + base)
        lens.append(ln)
        rel.append(ts - ts.min())
        base += len(raw)
    src = np.concatenate(blobs)
    off, ln, rel_ns = np.concatenate(offs), np.concatenate(lens), np.concatenate(rel)
    order = np.argsort(rel_ns, kind="stable")
    off, ln, rel_ns = off[order], ln[order], rel_ns[order]
    rec_end = np.cumsum(ln)
    rec_start = rec_end - ln
    # Gather the records into one buffer: index of every output byte in ``src``.
    idx = np.repeat(off - rec_start, ln) + np.arange(int(rec_end[-1]), dtype=np.int64)
    data = src[idx]
    # Fixed per copy: usec field and the original lengths; ts_sec is patched per copy.
    usec = ((rel_ns % 1_000_000_000) // 1000).astype("<u4")
    four = np.arange(4, dtype=np.int64)
    data[(rec_start[:, None] + 4 + four).ravel()] = usec.view(np.uint8)
    ip = _ipv4_header_pos(data, rec_start + 16, ln - 16)
    ip = ip[ip >= 0]
    addr = np.concatenate([ip + 12, ip + 16])  # src, dst
    return Template(
        data=data,
        rec_end=rec_end,
        sec_idx=rec_start[:, None] + four,
        sec_rel=rel_ns // 1_000_000_000,
        ip_hi_idx=addr + 1,
        ip_lo_idx=addr + 2,
        stride_s=math.ceil(rel_ns[-1] / 1e9) + GAP_S,
        key=h.hexdigest()[:10],
    )


def packets_for_size(t: Template, size_bytes: int) -> int:
    """Smallest packet count whose capture is at least ``size_bytes`` long."""
    body = max(size_bytes - len(PCAP_HEADER), 1)
    full, rest = divmod(body, t.nbytes)
    if rest == 0:
        return full * t.packets
    return full * t.packets + int(np.searchsorted(t.rec_end, rest)) + 1


def write_capture(t: Template, packets: int, dest: Path) -> None:
    """Write ``packets`` records (copies of the template, patched per copy) to ``dest`` atomically."""
    if packets < 1:
        raise ValueError("packets must be ≥ 1")
    copies = -(-packets // t.packets)
    work = np.empty_like(t.data)
    hi0, lo0 = t.data[t.ip_hi_idx], t.data[t.ip_lo_idx]
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            f.write(PCAP_HEADER)
            for c in range(copies):
                n = min(t.packets, packets - c * t.packets)
                np.copyto(work, t.data)
                sec = (t.sec_rel + (BASE_EPOCH_S + c * t.stride_s)).astype("<u4")
                work[t.sec_idx] = sec.view(np.uint8).reshape(-1, 4)
                work[t.ip_hi_idx] = hi0 ^ np.uint8((c >> 8) & 0xFF)
                work[t.ip_lo_idx] = lo0 ^ np.uint8(c & 0xFF)
                f.write(memoryview(work)[: int(t.rec_end[n - 1])])
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def build_capture(
    packets: int | None = None,
    size_bytes: int | None = None,
    *,
    data_dir: Path = SHARED_DATA,
    out_dir: Path = OUT_DIR,
    template: Template | None = None,
) -> Path:
    """Path of the benchmark capture with ``packets`` records (or ≥ ``size_bytes``), built if not cached."""
    t = template or load_template(data_dir)
    if packets is None:
        if size_bytes is None:
            raise ValueError("give packets or size_bytes")
        packets = packets_for_size(t, size_bytes)
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / f"bench-{t.key}-{packets}p.pcap"
    copies = -(-packets // t.packets)
    expected = len(PCAP_HEADER) + (copies - 1) * t.nbytes + int(t.rec_end[packets - (copies - 1) * t.packets - 1])
    if not (dest.is_file() and dest.stat().st_size == expected):
        write_capture(t, packets, dest)
    return dest


def parse_size(text: str) -> int:
    """'2GB', '500MB', '1.5G', '123456' → bytes (powers of 1000)."""
    s = text.strip().upper().removesuffix("B")
    mult = {"K": 10**3, "M": 10**6, "G": 10**9}.get(s[-1:], 1)
    return int(float(s[:-1] if mult > 1 else s) * mult)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--packets", type=int, default=1_000_000, help="records in the capture (default 1,000,000)")
    g.add_argument("--size", type=parse_size, help="target size instead, e.g. 2GB")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    try:
        t = load_template()
        path = build_capture(None if args.size else args.packets, args.size, template=t)
    except MissingDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = path.stat().st_size
    print(f"{path}  {size / 1e6:,.1f} MB  ({t.packets:,} packets, {t.nbytes / 1e6:.1f} MB, "
          f"{t.stride_s} s per copy)  {time.perf_counter() - start:.1f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
