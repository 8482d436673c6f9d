"""Per-message DNS summaries: the ``dns`` table, derived numbers only (names never leave capture, only hashes).

One row per DNS message on UDP or TCP port 53, both directions. A compiled kernel reads the header and the first
question; every read is bounds-checked against the captured bytes, compression pointers are never followed (a
question name is never compressed in practice) and a name stops after at most 128 labels, so no loop can run away.
When the snap length cut the name short, its length is estimated from the UDP/IP length (``name_len_estimated``).
"""

from __future__ import annotations

import numba as nb
import numpy as np
import pyarrow as pa

from netsentry.pipeline.capture.decode import _be16
from netsentry.pipeline.core.hashing import FNV1A64_OFFSET, FNV1A64_PRIME, MURMUR3_FMIX64, finalize64
from netsentry.pipeline.core.schemas import DNS, message_table

DNS_PORT = 53
HEADER_B = 12  # RFC 1035 4.1.1: id, flags, four counts
QUESTION_TAIL_B = 4  # qtype + qclass after the name
OPT_RECORD_B = 11  # RFC 6891: root name (1) + type (2) + class/payload size (2) + ttl (4) + rdlen (2), no options
NAME_OVERHEAD_B = 2  # wire form of a dotted name of n characters is n + 2 bytes (first length byte, final zero)
MAX_NAME_LEN = 253  # RFC 1035: 255 bytes in wire form
MAX_LABELS = 128  # 255 wire bytes hold at most 127 labels
MAX_LABEL_LEN = 63
PACKET_COLUMNS = ("ts_ns", "vni", "ip_version", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "frag",
                  "payload_len", "l4_at")  # fmt: skip
"""The decoded packet columns a DNS row is built from."""

_DOT = np.uint64(0x2E)


@nb.njit(inline="always", cache=True)
def _lower(c):
    return c + 32 if 65 <= c <= 90 else c


@nb.njit(cache=True)
def _hash_labels(b, lab_start, lab_len, first, stop):
    """FNV-1a of labels ``first..stop-1`` (starts/lengths in ``lab_start``/``lab_len``), lower-cased and dotted."""
    h = FNV1A64_OFFSET
    for k in range(first, stop):
        if k > first:
            h = (h ^ _DOT) * FNV1A64_PRIME
        s = lab_start[k]
        for j in range(lab_len[k]):
            h = (h ^ np.uint64(_lower(np.int64(b[s + j])))) * FNV1A64_PRIME
    return finalize64(h, MURMUR3_FMIX64)


@nb.njit(cache=True)
def summarize(b, at, end, wire_len, is_tcp, ok, is_resp, opcode, rcode, qdcount, ancount, qtype,
              name_len, estimated, labels, max_label, entropy, domain_hash, name_hash):  # fmt: skip
    """Summarise the DNS message whose bytes start at ``b[at[i]]`` (captured up to ``end[i]``; ``wire_len[i]`` bytes
    on the wire, a TCP one after its 2-byte length) into row ``i``; ``ok[i]`` 0 when no header fits."""
    hist = np.zeros(256, np.int64)
    lab_start = np.zeros(MAX_LABELS, np.int64)
    lab_len = np.zeros(MAX_LABELS, np.int64)
    for i in range(at.shape[0]):
        ok[i] = 0
        p = at[i]
        e = min(end[i], p + wire_len[i])  # link-layer padding is no DNS byte
        wl = wire_len[i]
        if p < 0 or e > b.shape[0]:
            continue
        if is_tcp[i]:
            if p + 2 > e:
                continue
            wl = _be16(b, p)
            p += 2
            e = min(e, p + wl)
        if p + HEADER_B > e:
            continue
        ok[i] = 1
        flags = _be16(b, p + 2)
        is_resp[i] = flags >> 15
        opcode[i] = (flags >> 11) & 0xF
        rcode[i] = flags & 0xF
        qd, an, ns, ar = _be16(b, p + 4), _be16(b, p + 6), _be16(b, p + 8), _be16(b, p + 10)
        qdcount[i], ancount[i] = qd, an
        qtype[i], name_len[i], estimated[i], labels[i], max_label[i] = 0, 0, 0, 0, 0
        entropy[i], domain_hash[i], name_hash[i] = 0.0, 0, 0
        if qd == 0:
            continue
        q = p + HEADER_B
        n_lab, declared, chars, longest = 0, 0, 0, 0
        complete, cut = False, False
        hist[:] = 0
        for _ in range(MAX_LABELS):
            if q >= e:
                cut = True
                break
            ln = np.int64(b[q])
            if ln == 0:
                q += 1
                complete = True
                break
            if ln > MAX_LABEL_LEN:  # a compression pointer or a reserved label type: not followed
                break
            lab_start[n_lab] = q + 1
            seen = min(ln, e - q - 1)
            lab_len[n_lab] = seen
            for j in range(seen):
                hist[b[q + 1 + j]] += 1
            chars += seen
            declared += ln
            longest = max(longest, ln)
            n_lab += 1
            q += 1 + ln
            if seen < ln:
                cut = True
                break
        known = declared + n_lab - 1 if n_lab > 0 else 0
        labels[i], max_label[i] = n_lab, longest
        if cut:
            estimated[i] = 1
            if an == 0 and ns == 0 and qd == 1:  # a query: its length is the name's, by protocol arithmetic
                est = wl - HEADER_B - QUESTION_TAIL_B - (OPT_RECORD_B if ar > 0 else 0) - NAME_OVERHEAD_B
                known = max(known, min(est, MAX_NAME_LEN))
        elif complete and q + 2 <= e:
            qtype[i] = _be16(b, q)
        name_len[i] = known
        if chars > 0:
            h = 0.0
            for c in range(256):
                if hist[c] > 0:
                    pc = hist[c] / chars
                    h -= pc * np.log2(pc)
            entropy[i] = h
            name_hash[i] = _hash_labels(b, lab_start, lab_len, 0, n_lab)
            if complete:
                domain_hash[i] = _hash_labels(b, lab_start, lab_len, max(n_lab - 2, 0), n_lab)


def dns_mask(cols: dict[str, np.ndarray], ok_status: np.ndarray) -> np.ndarray:
    """Decoded packets that may carry a DNS message: TCP/UDP to or from port 53, first fragment, with payload."""
    proto = cols["proto"]
    port53 = (cols["src_port"] == DNS_PORT) | (cols["dst_port"] == DNS_PORT)
    return (
        ok_status
        & ((proto == 6) | (proto == 17))
        & port53
        & (cols["frag"] < 2)
        & (cols["l4_at"] >= 0)
        & (cols["payload_len"] > 0)
    )


def dns_rows(buf: np.ndarray, cols: dict[str, np.ndarray], rec_end: np.ndarray, capture_point: str) -> pa.Table | None:
    """The DNS rows of a decoded batch (``cols`` already picked to :func:`dns_mask`; ``rec_end`` where each record's
    captured bytes end in ``buf``); ``None`` when none parses."""
    n = len(cols["ts_ns"])
    if n == 0:
        return None
    out = {
        "ok": np.zeros(n, np.uint8), "is_response": np.zeros(n, np.uint8), "opcode": np.zeros(n, np.uint8),
        "rcode": np.zeros(n, np.uint8), "qdcount": np.zeros(n, np.uint16), "ancount": np.zeros(n, np.uint16),
        "qtype": np.zeros(n, np.uint16), "name_len": np.zeros(n, np.uint16),
        "name_len_estimated": np.zeros(n, np.uint8), "labels": np.zeros(n, np.uint8),
        "max_label_len": np.zeros(n, np.uint8), "label_entropy": np.zeros(n, np.float32),
        "domain_hash": np.zeros(n, np.uint64), "name_hash": np.zeros(n, np.uint64),
    }  # fmt: skip
    is_tcp = (cols["proto"] == 6).astype(np.uint8)
    wire = cols["payload_len"].astype(np.int64)
    summarize(buf, cols["l4_at"].astype(np.int64), rec_end.astype(np.int64), wire, is_tcp, *out.values())
    keep = out.pop("ok") == 1
    if not keep.any():
        return None
    return dns_table({**{k: v[keep] for k, v in cols.items()}, **{k: v[keep] for k, v in out.items()}}, capture_point)


def dns_table(cols: dict[str, np.ndarray], capture_point: str) -> pa.Table:
    """Summary columns (with the packet columns ``ts_ns``, ``vni``, ``ip_version``, addresses, ports, ``proto``) →
    a table in the :data:`~netsentry.pipeline.core.schemas.DNS` contract."""
    return message_table(cols, capture_point, DNS)
