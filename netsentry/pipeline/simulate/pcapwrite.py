"""Observed packets → a nanosecond pcap file, frames assembled by a compiled writer.

Ethernet / IPv4 (correct header checksum, DF on TCP) / TCP, UDP or ICMP echo (correct checksums)
/ payload from :mod:`payloads`, or a router's ICMP destination unreachable quoting the SYN it refuses;
optionally inside VXLAN (outer Ethernet/IPv4/UDP 4789). Written in chunks so memory stays bounded; the
same inputs give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numba as nb
import numpy as np

from netsentry.pipeline.simulate.dns_payloads import TUNNEL_APPS, dns_variant
from netsentry.pipeline.simulate.payloads import build_pool, is_dns_app

PCAP_NS_HEADER = np.array([0x4D, 0x3C, 0xB2, 0xA1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 1, 0, 0, 0],
                          dtype=np.uint8)  # fmt: skip
OUTER = 14 + 20 + 8 + 8
LONG_LABEL = 16  # a tunnel query's labels at least this long carry data: resampled per packet
DNS_HEADER = 12
MAX_NAME_WIRE = 255  # RFC 1035: a name is at most 255 bytes on the wire
SCRATCH_NAME = 256  # where in the scratch buffer a rewritten DNS message head is kept (header stack before it)
CHUNK = 1 << 18


@nb.njit(inline="always", cache=True)
def _put16(b, p, v):
    b[p] = (v >> 8) & 0xFF
    b[p + 1] = v & 0xFF


@nb.njit(inline="always", cache=True)
def _put32(b, p, v):
    b[p] = (v >> 24) & 0xFF
    b[p + 1] = (v >> 16) & 0xFF
    b[p + 2] = (v >> 8) & 0xFF
    b[p + 3] = v & 0xFF


@nb.njit(cache=True)
def _sum16(b, p, n):
    s = 0
    for i in range(0, n - 1, 2):
        s += (np.int64(b[p + i]) << 8) | np.int64(b[p + i + 1])
    if n % 2:
        s += np.int64(b[p + n - 1]) << 8
    return s


@nb.njit(inline="always", cache=True)
def _fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


@nb.njit(cache=True)
def _mac(b, p, ip, tag):
    b[p] = 0x02
    b[p + 1] = tag
    _put32(b, p + 2, ip)


@nb.njit(cache=True)
def _ipv4(b, p, total, ipid, df, ttl, proto, src, dst):
    b[p] = 0x45
    b[p + 1] = 0
    _put16(b, p + 2, total)
    _put16(b, p + 4, ipid)
    _put16(b, p + 6, 0x4000 if df else 0)
    b[p + 8] = ttl
    b[p + 9] = proto
    _put16(b, p + 10, 0)
    _put32(b, p + 12, src)
    _put32(b, p + 16, dst)
    _put16(b, p + 10, _fold(_sum16(b, p, 20)))


@nb.njit(cache=True)
def _resample_labels(pool, po, n, seed, scratch):
    """Copy the query's header and name (at ``pool[po:po+n]``) into ``scratch[SCRATCH_NAME:]``, each character of
    a label of ≥ LONG_LABEL replaced by one drawn from the same label (its alphabet and entropy stay); return where
    the name ends (0 when it does not parse within ``n`` bytes or the wire limit)."""
    p = DNS_HEADER
    end = min(n, DNS_HEADER + MAX_NAME_WIRE)
    for k in range(min(n, p)):
        scratch[SCRATCH_NAME + k] = pool[po + k]
    while p < end:
        ln = np.int64(pool[po + p])
        scratch[SCRATCH_NAME + p] = ln
        if ln == 0:
            return p + 1
        if ln > 63 or p + 1 + ln > end:
            return 0
        for k in range(ln):
            c = pool[po + p + 1 + k]
            if ln >= LONG_LABEL:
                x = (seed * 2654435761 + (p + k + 1) * 0x9E3779B1) & 0xFFFFFFFF
                x ^= x >> 13
                x = (x * 0x5BD1E995) & 0xFFFFFFFF
                x ^= x >> 15
                c = pool[po + p + 1 + x % ln]
            scratch[SCRATCH_NAME + p + 1 + k] = c
        p += 1 + ln
    return 0


@nb.njit(cache=True)
def write_frames(out, rec_off, ts, caplen, wirelen, src, dst, sport, dport, proto, flags, seq, ack, plen, ipid,
                 ttl, dir_, dns_id, scramble, outer_src, outer_dst, vni, src_tag, dst_tag, icmp_src, pool, pay_off,
                 pay_sum, scratch):  # fmt: skip
    """Write one pcap record per packet at ``rec_off``: headers are built in ``scratch`` (checksums
    use each payload's precomputed sum), then the captured part of headers and payload is copied. MACs are
    ``02:TAG:`` + the IPv4 address (``src_tag``/``dst_tag``: the VM port's network, 0 for hosts and the internet).
    A packet with ``icmp_src`` set is its router's ICMP destination unreachable (code in ``ack``) to ``dst``,
    quoting the SYN of the connection (``dst``:``dport`` → ``src``:``sport``, sequence ``seq``)."""
    for i in range(ts.shape[0]):
        r = rec_off[i]
        b = scratch
        p = 0
        if vni[i] != 0:
            _mac(b, p, outer_dst[i], 0)
            _mac(b, p + 6, outer_src[i], 0)
            _put16(b, p + 12, 0x0800)
            inner_len = wirelen[i] - OUTER
            _ipv4(b, p + 14, 20 + 8 + 8 + inner_len, 0, False, 64, 17, outer_src[i], outer_dst[i])
            _put16(b, p + 34, 49152 + ((src[i] ^ dst[i] ^ sport[i] ^ dport[i]) & 0x3FFF))
            _put16(b, p + 36, 4789)
            _put16(b, p + 38, 8 + 8 + inner_len)
            _put16(b, p + 40, 0)
            _put32(b, p + 42, 0x08000000)
            _put32(b, p + 46, vni[i] << 8)
            p += OUTER
        refusal = icmp_src[i] != 0
        sender = icmp_src[i] if refusal else src[i]
        _mac(b, p, dst[i], dst_tag[i])
        _mac(b, p + 6, sender, 0 if refusal else src_tag[i])
        _put16(b, p + 12, 0x0800)
        ip = p + 14
        pr = proto[i]
        l4 = 20 if pr == 6 else 8
        n = plen[i]
        _ipv4(b, ip, 20 + l4 + n, ipid[i], pr == 6, ttl[i], pr, sender, dst[i])
        q = ip + 20
        hlen = q + l4
        po = pay_off[i]
        psum = pay_sum[i]
        patch = dns_id[i] >= 0 and n >= 2
        if patch:
            psum += dns_id[i] - ((np.int64(pool[po]) << 8) | np.int64(pool[po + 1]))
        # a tunnel's query names are ever new: its long data labels are resampled per packet
        name_end = 0
        if patch and dir_[i] == 0 and scramble[i]:
            name_end = _resample_labels(pool, po, n, dns_id[i] ^ (ts[i] * 31) ^ (src[i] * 97), scratch)
            for k in range(DNS_HEADER, name_end):
                d = np.int64(scratch[SCRATCH_NAME + k]) - np.int64(pool[po + k])
                psum += d << 8 if k % 2 == 0 else d
        if pr == 6:
            _put16(b, q, sport[i])
            _put16(b, q + 2, dport[i])
            _put32(b, q + 4, seq[i])
            _put32(b, q + 8, ack[i])
            b[q + 12] = 0x50
            b[q + 13] = flags[i]
            _put16(b, q + 14, 65535)
            _put32(b, q + 16, 0)
            cso = q + 16
        elif pr == 17:
            _put16(b, q, sport[i])
            _put16(b, q + 2, dport[i])
            _put16(b, q + 4, 8 + n)
            _put16(b, q + 6, 0)
            cso = q + 6
        elif refusal:  # type 3, then the refused SYN's IPv4 header and first 8 TCP bytes
            b[q] = 3
            b[q + 1] = ack[i] & 0xFF
            _put32(b, q + 2, 0)
            _put16(b, q + 6, 0)
            _ipv4(b, q + 8, 40, 0, True, 63, 6, dst[i], src[i])
            _put16(b, q + 28, dport[i])
            _put16(b, q + 30, sport[i])
            _put32(b, q + 32, seq[i])
            _put16(b, q + 2, _fold(_sum16(b, q, 8 + n)))
            hlen = q + 8 + n
            n = 0
            cso = -1
        else:  # ICMP echo: request from the client, reply from the server
            b[q] = 8 if dir_[i] == 0 else 0
            b[q + 1] = 0
            _put16(b, q + 2, 0)
            _put16(b, q + 4, sport[i] if dir_[i] == 0 else dport[i])
            _put16(b, q + 6, seq[i] & 0xFFFF)
            _put16(b, q + 2, _fold(_sum16(b, q, 8) + psum))
            cso = -1
        if cso >= 0:
            s = _sum16(b, q, l4) + psum + ((src[i] >> 16) & 0xFFFF) + (src[i] & 0xFFFF)
            s += ((dst[i] >> 16) & 0xFFFF) + (dst[i] & 0xFFFF) + pr + l4 + n
            c = _fold(s)
            if pr == 17 and c == 0:
                c = 0xFFFF
            _put16(b, cso, c)
        sec = ts[i] // 1_000_000_000
        nsec = ts[i] - sec * 1_000_000_000
        cap = caplen[i]
        for k in range(4):
            out[r + k] = (sec >> (8 * k)) & 0xFF
            out[r + 4 + k] = (nsec >> (8 * k)) & 0xFF
            out[r + 8 + k] = (cap >> (8 * k)) & 0xFF
            out[r + 12 + k] = (wirelen[i] >> (8 * k)) & 0xFF
        d = r + 16
        hc = min(hlen, cap)
        out[d : d + hc] = scratch[:hc]
        pc = min(n, cap - hc)
        if pc > 0:
            out[d + hlen : d + hlen + pc] = pool[po : po + pc]
            if patch:
                out[d + hlen] = (dns_id[i] >> 8) & 0xFF
                if pc > 1:
                    out[d + hlen + 1] = dns_id[i] & 0xFF
                for k in range(DNS_HEADER, min(name_end, pc)):
                    out[d + hlen + k] = scratch[SCRATCH_NAME + k]


def frame_lengths(obs: dict[str, np.ndarray]) -> np.ndarray:
    """Wire length of each observed packet's frame."""
    l4 = np.where(obs["proto"] == 6, 20, 8)
    return (14 + 20 + l4 + obs["len"] + np.where(obs["vni"] != 0, OUTER, 0)).astype(np.int64)


def write_pcap(path: Path, obs: dict[str, np.ndarray], snaplen: int = 0) -> int:
    """Write the observed packets (time-ordered) to ``path``; return the bytes written. ``snaplen`` (0: whole
    frames) never cuts a DNS message before the end of its question, so its type and domain stay readable.

    Callers write into a temporary directory that replaces the output as a whole."""
    first_all = _first_segment(obs)
    is_dns_all = is_dns_app(obs["app"]) & (obs["proto"] == 17)
    dns_all = np.where(is_dns_all, (obs["conn"] * 7919 + obs["seq"]) & 0xFFFF, -1).astype(np.int64)
    variant_all = np.where(is_dns_all, dns_variant(obs["conn"], obs["seq"], obs["app"]), 0)
    scramble_all = (is_dns_all & np.isin(obs["app"], TUNNEL_APPS)).astype(np.uint8)
    scratch = np.zeros(SCRATCH_NAME + DNS_HEADER + MAX_NAME_WIRE, dtype=np.uint8)  # header stack, then a DNS name
    total = len(PCAP_NS_HEADER)
    buf = np.empty(0, dtype=np.uint8)
    with Path(path).open("wb") as f:
        f.write(PCAP_NS_HEADER.tobytes())
        n = len(obs["ts_ns"])
        for a in range(0, n, CHUNK):
            sl = slice(a, min(n, a + CHUNK))
            o = {k: v[sl] for k, v in obs.items()}
            wire = frame_lengths(o)
            pool, pay_off, pay_sum, qend = build_pool(o["app"], o["dir"], first_all[sl], o["len"], variant_all[sl])
            cap = np.minimum(wire, snaplen) if snaplen else wire
            # a tap's port-53 filter keeps every DNS message at least through its question (type and name)
            cap = np.where(is_dns_all[sl] & (qend > 0), np.maximum(cap, np.minimum(wire, wire - o["len"] + qend)), cap)
            rec_off = np.concatenate([[0], np.cumsum(16 + cap)[:-1]]).astype(np.int64)
            need = int((16 + cap).sum())
            if len(buf) < need:
                buf = np.empty(need, dtype=np.uint8)  # reused across chunks: fresh pages cost faults
            out = buf[:need]
            write_frames(
                out, rec_off, o["ts_ns"], cap, wire, o["src"].astype(np.int64), o["dst"].astype(np.int64),
                o["sport"].astype(np.int64), o["dport"].astype(np.int64), o["proto"].astype(np.int64),
                o["flags"], o["seq"], o["ack"], o["len"], o["ipid"], o["ttl"], o["dir"], dns_all[sl],
                scramble_all[sl], o["outer_src"].astype(np.int64), o["outer_dst"].astype(np.int64),
                o["vni"].astype(np.int64), o["src_mac_tag"].astype(np.int64), o["dst_mac_tag"].astype(np.int64),
                o["icmp_src"].astype(np.int64), pool, pay_off, pay_sum, scratch,
            )  # fmt: skip
            f.write(memoryview(out))
            total += len(out)
    return total


def _first_segment(o: dict[str, np.ndarray]) -> np.ndarray:
    """True for the first payload-carrying packet of each (connection, direction)."""
    has = o["len"] > 0
    key = o["conn"] * 2 + o["dir"]
    first = np.zeros(len(key), dtype=bool)
    idx = np.flatnonzero(has)
    _, pos = np.unique(key[idx], return_index=True)
    first[idx[pos]] = True
    return first
