"""Record walkers: find each packet record in a byte buffer of a pcap or pcapng file.

Compiled with numba, so the walk builds no Python object per packet. Each walker
consumes one chunk and reports where it stopped, so a file is read in bounded
memory and a record that straddles two chunks is resumed in the next one.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# Why a walker stopped.
NEED_MORE = 0  # the next record is not complete in this buffer
CORRUPT = 1  # the next record's header is impossible; the rest of the file cannot be trusted
OUT_FULL = 2  # the output arrays are full; call again

MAX_RECORD = 1 << 18  # 256 KiB: larger than any real frame (64 KiB GSO frames included)
MAX_BLOCK = 1 << 24  # 16 MiB: pcapng blocks larger than this are treated as corrupt
MAX_IFACES = 1024

# pcapng interface-state slots (int64 array `st`): byte-swap flag, interface count, then per interface.
ST_SWAP = 0
ST_NIF = 1
ST_SEEN_SHB = 2
ST_BAD_IFACE = 3  # packets naming an undeclared interface (counted, skipped)
ST_LEN = 4


@nb.njit(inline="always", cache=True)
def u16(b, p, swap):
    if swap:
        return (np.int64(b[p]) << 8) | np.int64(b[p + 1])
    return np.int64(b[p]) | (np.int64(b[p + 1]) << 8)


@nb.njit(inline="always", cache=True)
def u32(b, p, swap):
    if swap:
        return (np.int64(b[p]) << 24) | (np.int64(b[p + 1]) << 16) | (np.int64(b[p + 2]) << 8) | np.int64(b[p + 3])
    return np.int64(b[p]) | (np.int64(b[p + 1]) << 8) | (np.int64(b[p + 2]) << 16) | (np.int64(b[p + 3]) << 24)


@nb.njit(cache=True)
def walk_pcap(b, pos, end, swap, ts_mul, linktype, max_caplen, off, cap, orig, ts, lt):
    """Walk classic pcap records in ``b[pos:end]``; fill outputs; return (count, stop_pos, reason)."""
    n = 0
    cap_out = off.shape[0]
    while True:
        if n >= cap_out:
            return n, pos, OUT_FULL
        if pos + 16 > end:
            return n, pos, NEED_MORE
        incl = u32(b, pos + 8, swap)
        olen = u32(b, pos + 12, swap)
        if incl > max_caplen:
            return n, pos, CORRUPT
        if pos + 16 + incl > end:
            return n, pos, NEED_MORE
        sec = u32(b, pos, swap)
        frac = u32(b, pos + 4, swap)
        off[n] = pos + 16
        cap[n] = incl
        orig[n] = olen if olen >= incl else incl
        ts[n] = sec * 1_000_000_000 + frac * ts_mul
        lt[n] = linktype
        n += 1
        pos += 16 + incl


@nb.njit(cache=True)
def _read_idb_options(b, p, end, swap):
    """Return (tsresol byte, tsoffset seconds) from an IDB's options region ``b[p:end]``."""
    tsresol = 6
    tsoffset = 0
    while p + 4 <= end:
        code = u16(b, p, swap)
        length = u16(b, p + 2, swap)
        if code == 0:
            break
        if p + 4 + length > end:
            break
        if code == 9 and length >= 1:
            tsresol = np.int64(b[p + 4])
        elif code == 14 and length >= 8:
            lo = u32(b, p + 4, swap)
            hi = u32(b, p + 8, swap)
            tsoffset = (hi << 32) | lo if not swap else (lo << 32) | hi
        p += 4 + ((length + 3) // 4) * 4
    return tsresol, tsoffset


@nb.njit(cache=True)
def _ts_to_ns(raw, tsresol):
    if tsresol & 0x80:
        k = tsresol & 0x7F
        return np.int64(np.float64(raw) * (1e9 / np.float64(2.0**k)))
    if tsresol <= 9:
        m = np.int64(1)
        for _ in range(9 - tsresol):
            m *= 10
        return raw * m
    d = np.int64(1)
    for _ in range(tsresol - 9):
        d *= 10
    return raw // d


@nb.njit(cache=True)
def walk_pcapng(b, pos, end, st, if_lt, if_res, if_off, if_snap, off, cap, orig, ts, lt):
    """Walk pcapng blocks in ``b[pos:end]``, keeping section/interface state in ``st`` and ``if_*``.

    Returns (count, stop_pos, reason). Unknown block types are skipped by their length.
    """
    n = 0
    cap_out = off.shape[0]
    while True:
        if n >= cap_out:
            return n, pos, OUT_FULL
        if pos + 12 > end:
            return n, pos, NEED_MORE
        btype_le = u32(b, pos, False)
        if btype_le == 0x0A0D0D0A:
            # Section header: its byte-order magic decides the endianness of this section.
            if pos + 12 > end:
                return n, pos, NEED_MORE
            bom = u32(b, pos + 8, False)
            if bom == 0x1A2B3C4D:
                st[ST_SWAP] = 0
            elif bom == 0x4D3C2B1A:
                st[ST_SWAP] = 1
            else:
                return n, pos, CORRUPT
            st[ST_NIF] = 0
            st[ST_SEEN_SHB] = 1
        swap = st[ST_SWAP] == 1
        if st[ST_SEEN_SHB] == 0:
            return n, pos, CORRUPT
        btype = u32(b, pos, swap)
        blen = u32(b, pos + 4, swap)
        if blen < 12 or blen % 4 != 0 or blen > MAX_BLOCK:
            return n, pos, CORRUPT
        if pos + blen > end:
            return n, pos, NEED_MORE
        if u32(b, pos + blen - 4, swap) != blen:
            return n, pos, CORRUPT
        if btype == 1:  # interface description
            k = st[ST_NIF]
            if blen < 20 or k >= MAX_IFACES:
                return n, pos, CORRUPT
            if_lt[k] = u16(b, pos + 8, swap)
            if_snap[k] = u32(b, pos + 12, swap)
            res, toff = _read_idb_options(b, pos + 16, pos + blen - 4, swap)
            if_res[k] = res
            if_off[k] = toff
            st[ST_NIF] = k + 1
        elif btype == 6 or btype == 2:  # enhanced packet / obsolete packet
            if blen < 32:
                return n, pos, CORRUPT
            if btype == 6:
                iface = u32(b, pos + 8, swap)
            else:
                iface = u16(b, pos + 8, swap)
            hi = u32(b, pos + 12, swap)
            lo = u32(b, pos + 16, swap)
            clen = u32(b, pos + 20, swap)
            olen = u32(b, pos + 24, swap)
            if 28 + clen + 4 > blen:
                return n, pos, CORRUPT
            if iface >= st[ST_NIF]:
                st[ST_BAD_IFACE] += 1
            else:
                off[n] = pos + 28
                cap[n] = clen
                orig[n] = olen if olen >= clen else clen
                ts[n] = _ts_to_ns((hi << 32) | lo, if_res[iface]) + if_off[iface] * 1_000_000_000
                lt[n] = if_lt[iface]
                n += 1
        elif btype == 3:  # simple packet: interface 0, no timestamp
            if st[ST_NIF] == 0:
                st[ST_BAD_IFACE] += 1
            else:
                olen = u32(b, pos + 8, swap)
                clen = blen - 16
                if olen < clen:
                    clen = olen
                if if_snap[0] > 0 and clen > if_snap[0]:
                    clen = if_snap[0]
                off[n] = pos + 12
                cap[n] = clen
                orig[n] = olen
                ts[n] = 0
                lt[n] = if_lt[0]
                n += 1
        pos += blen


def new_pcapng_state() -> tuple[np.ndarray, ...]:
    """Fresh section/interface state for :func:`walk_pcapng`."""
    return (
        np.zeros(ST_LEN, dtype=np.int64),
        np.zeros(MAX_IFACES, dtype=np.int64),
        np.zeros(MAX_IFACES, dtype=np.int64),
        np.zeros(MAX_IFACES, dtype=np.int64),
        np.zeros(MAX_IFACES, dtype=np.int64),
    )


def record_arrays(n: int) -> tuple[np.ndarray, ...]:
    """Output arrays for a walker: data offset, captured length, wire length, ts_ns, link type."""
    return (
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=np.int64),
    )
