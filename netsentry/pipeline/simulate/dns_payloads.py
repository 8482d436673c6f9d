"""DNS messages for the payload pool: a stub resolver's everyday lookups and the query/answer shapes of real tunnels.

Why: per-query DNS features (query type, name length and entropy, the registered domain's query rate, NXDOMAIN
share) can only be learnt when simulated names look like the world's. A message is built once per
(app, direction, size, variant); the frame writer picks the variant per packet (:func:`dns_variant`) and, for
tunnels, makes every query name new by resampling its long data labels (so one template serves a whole session).
"""

from __future__ import annotations

import functools
import random

import numpy as np

# Tunnel payload styles (the ``app`` column; above the conns.APP_* range so they never collide).
APP_DNS_IODINE = 32  # iodine, NULL records, base128 upstream
APP_DNS_IODINE_PRIVATE = 33  # iodine -T PRIVATE (type 65399)
APP_DNS_DNSCAT2 = 34  # dnscat2 without a domain: dnscat.<hex>, TXT/CNAME/MX
APP_DNS_DNSTT = 35  # dnstt: base32 names, TXT answers
TUNNEL_APPS = (APP_DNS_IODINE, APP_DNS_IODINE_PRIVATE, APP_DNS_DNSCAT2, APP_DNS_DNSTT)

A, NS, CNAME, SOA, NULL, PTR, MX, TXT, AAAA, SRV, OPT, HTTPS = 1, 2, 5, 6, 10, 12, 15, 16, 28, 33, 41, 65
PRIVATE = 65399  # iodine's private-use type (RFC 6895 range 65280–65534)
BENIGN_VARIANTS = 128
"""Benign lookups hash into this many (type, EDNS, outcome) variants per size (each with its own Zipf-drawn domain):
few enough templates to build once per run."""

HEADER_B, QTAIL_B, OPT_B, RR_FIXED_B = 12, 4, 11, 12  # RFC 1035/6891: header, qtype+qclass, bare OPT, RR sans rdata
SOA_FIXED_B = RR_FIXED_B + 2 + 1 + 20  # an SOA record but its MNAME's characters: MNAME ends, root RNAME, 5 counters
_LOWER = b"abcdefghijklmnopqrstuvwxyz"
_B32 = b"abcdefghijklmnopqrstuvwxyz234567"
_HEX = b"0123456789abcdef"
# iodine's base128 alphabet: letters of both cases, digits and the bytes 0xbc–0xfd (a resolver passes them on)
_B128 = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + bytes(range(0xBC, 0xFE))
_SYLLABLES = [b"an", b"ar", b"be", b"bo", b"ca", b"co", b"da", b"de", b"el", b"en", b"fa", b"go", b"in", b"ka",
              b"la", b"le", b"li", b"lo", b"ma", b"me", b"mi", b"mo", b"na", b"ne", b"no", b"or", b"pa", b"ra",
              b"re", b"ri", b"ro", b"sa", b"se", b"so", b"ta", b"te", b"ti", b"to", b"va", b"ve", b"zo"]  # fmt: skip
_HOST_WORDS = [b"www", b"api", b"cdn", b"mail", b"static", b"img", b"login", b"auth", b"update", b"time", b"ntp",
               b"assets", b"edge", b"app", b"m", b"files", b"media", b"status", b"telemetry", b"events", b"push",
               b"graph", b"accounts", b"content", b"dl", b"repo", b"mirror", b"security", b"pkg", b"v1"]  # fmt: skip
_TLDS = [b"com", b"com", b"com", b"net", b"org", b"io", b"de", b"co", b"cloud", b"dev"]
_CLOUD_DOMAINS = [b"cloudfront.net", b"amazonaws.com", b"azureedge.net", b"akamaiedge.net", b"googleapis.com",
                  b"cloudflare.net", b"fastly.net", b"trafficmanager.net"]  # fmt: skip
N_DOMAINS = 400


@functools.cache
def _domains() -> list[bytes]:
    """Dictionary-like registered domains (syllable words under common TLDs), most popular first."""
    rng = np.random.default_rng(53)
    out = []
    for _ in range(N_DOMAINS):
        word = b"".join(_SYLLABLES[int(k)] for k in rng.integers(0, len(_SYLLABLES), int(rng.integers(2, 5))))
        out.append(word + b"." + _TLDS[int(rng.integers(len(_TLDS)))])
    return out


@functools.cache
def _zipf_ranks() -> np.ndarray:
    """Domain ranks in proportion to Zipf's law (s = 1): rank r is drawn with probability ∝ 1/r."""
    rank = 1.0 / np.arange(1, N_DOMAINS + 1)
    return np.repeat(np.arange(N_DOMAINS), np.maximum(np.round(rank / rank.sum() * 8192), 1).astype(np.int64))


def _counts(share: np.ndarray, total: int) -> np.ndarray:
    """Whole counts in proportion to ``share`` summing to ``total`` (largest remainders), each at least 1."""
    raw = share / share.sum() * total
    k = np.maximum(np.floor(raw).astype(np.int64), 1)
    k[np.argsort(k - raw)[: total - k.sum()]] += 1
    return k


@functools.cache
def _benign_table() -> np.ndarray:
    """Per variant: (cloud domain, qtype, EDNS0 OPT, NXDOMAIN, hash-style long name) as an int array."""
    rng = np.random.default_rng(1035)
    v = BENIGN_VARIANTS
    qtypes = np.array([A, AAAA, HTTPS, PTR, SRV, TXT, MX])
    share = np.array([0.55, 0.29, 0.08, 0.03, 0.02, 0.025, 0.005])  # stub resolvers: mostly address lookups
    qtype = rng.permutation(np.repeat(qtypes, _counts(share, v)))
    opt = rng.permutation(v) < v // 2  # systemd-resolved and modern stubs send EDNS0; glibc's default does not
    nx = rng.permutation(v) < round(0.03 * v)  # typos, search-list suffixes, dead names: 2–5 % of lookups fail
    hashy = rng.permutation(v) < v // 2  # of the long names: CDN/telemetry hash labels under a cloud domain
    return np.stack([rng.integers(0, len(_CLOUD_DOMAINS), v), qtype, opt, nx, hashy], axis=1).astype(np.int64)


def _fill(n: int, rng: random.Random, alphabet: bytes | None) -> list[bytes]:
    """Labels whose dotted length is exactly ``n`` (≥ 1): host words (``alphabet`` None) or random characters."""
    labels: list[bytes] = []
    left = n
    while left > 0:
        if alphabet is None:
            w = rng.choice(_HOST_WORDS)
            k = min(len(w), left)
        else:
            k = min(left, 63)
            w = bytes(rng.choices(alphabet, k=k))
        if left - k == 1:  # a lone dot can hold no label: one character less here, or the whole rest
            k = k - 1 if k > 1 else left
        labels.append(w[:k] if len(w) >= k else (w * (k // len(w) + 1))[:k])
        left -= k + 1
    return labels


def _wire(labels: list[bytes]) -> bytes:
    return b"".join(bytes([len(x)]) + x for x in labels) + b"\x00"


def benign_name(variant: int, n: int) -> tuple[list[bytes], int]:
    """A stub's lookup of dotted length ``n`` for ``variant``: ``(labels, qtype)``; the type falls back to A when
    the name cannot have its shape (a PTR name is 20–28 characters)."""
    cloud_i, qtype, _, _, hashy = (int(x) for x in _benign_table()[variant % BENIGN_VARIANTS])
    rng = random.Random(variant * 1000 + n)
    domain_i = int(_zipf_ranks()[rng.randrange(len(_zipf_ranks()))])  # Zipf popularity, per (variant, length)
    if qtype == PTR:
        if 20 <= n <= 28:  # d.c.b.a.in-addr.arpa: four octets of 1–3 digits
            digits = np.ones(4, np.int64)
            for k in rng.sample([0, 0, 1, 1, 2, 2, 3, 3], n - 20):
                digits[k] += 1
            lo = np.array([1, 10, 100])[digits - 1]
            octets = [bytes(str(rng.randrange(a, min(10 * a, 256))), "ascii") for a in lo]
            return [*octets, b"in-addr", b"arpa"], PTR
        qtype = A
    if n >= 40 and hashy:  # e.g. d3f1….cloudfront.net: long but benign
        dom = _CLOUD_DOMAINS[cloud_i].split(b".")
        return _fill(n - sum(len(x) + 1 for x in dom), rng, _HEX) + dom, qtype
    dom = _domains()[domain_i].split(b".")
    prefix = [b"_ldap", b"_tcp"] if qtype == SRV else [b"_dmarc"] if qtype == TXT and domain_i % 2 else []
    dlen = sum(len(x) + 1 for x in prefix + dom) - 1
    if dlen + 1 < n:
        return prefix + _fill(n - dlen - 1, rng, None) + dom, qtype
    if dlen == n:
        return prefix + dom, qtype
    return _fill(n, rng, None), A  # too short for the domain: a single-label or bare host name


def _tunnel_labels(app: int, n: int, rng: random.Random) -> list[bytes]:
    """A tunnel's name of dotted length ``n``: data labels (≥ 16 characters each, the writer resamples them per
    query) under the tool's domain."""
    if app == APP_DNS_DNSCAT2:
        head, tail, alphabet = [b"dnscat"], [], _HEX
    elif app == APP_DNS_DNSTT:
        head, tail, alphabet = [], [b"t", b"sunhex", b"net"], _B32
    else:
        head, tail, alphabet = [], [b"t1", b"lobowa", b"org"], _B128
    fixed = sum(len(x) + 1 for x in head + tail)
    data = max(n - fixed, 16)
    labels = _fill(data, rng, alphabet)
    if len(labels) > 1 and len(labels[-1]) < 16:  # keep every data label long enough to be resampled
        spare = 16 - len(labels[-1])
        labels[-2], labels[-1] = labels[-2][:-spare], labels[-1] + labels[-2][-spare:]
    return head + labels + tail


def _tunnel_qtype(app: int, variant: int) -> int:
    if app == APP_DNS_IODINE:
        return NULL
    if app == APP_DNS_IODINE_PRIVATE:
        return PRIVATE
    if app == APP_DNS_DNSTT:
        return TXT
    return (TXT, CNAME, MX)[variant % 3]  # dnscat2 picks a type per message


def _opt(pad: int) -> bytes:
    """A bare EDNS0 OPT record (1232-byte UDP payload), with an RFC 7830 padding option of ``pad`` bytes."""
    option = b"\x00\x0c" + pad.to_bytes(2, "big") + bytes(pad) if pad >= 0 else b""
    return b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00" + len(option).to_bytes(2, "big") + option


def _query(labels: list[bytes], qtype: int, opt: bool, size: int, pad: bool = False) -> bytes | None:
    """Header (RD), one question and an optional EDNS0 OPT (padded to ``size`` when ``pad``): ``None`` when that
    is not ``size`` bytes."""
    q = _wire(labels) + qtype.to_bytes(2, "big") + b"\x00\x01"
    out = b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00" + (b"\x00\x01" if opt else b"\x00\x00") + q
    if opt:
        out += _opt(size - len(out) - OPT_B - 4 if pad else -1)
    return out if len(out) == size else None


def _rr(rtype: int, rdata: bytes, ttl: int = 300) -> bytes:
    """A resource record owned by the question's name (a compression pointer to offset 12), class IN."""
    head = b"\xc0\x0c" + rtype.to_bytes(2, "big") + b"\x00\x01" + ttl.to_bytes(4, "big")
    return head + len(rdata).to_bytes(2, "big") + rdata


def _rdata(qtype: int, n: int, rng: random.Random, alphabet: bytes) -> bytes | None:
    """Record data of exactly ``n`` bytes for ``qtype`` (None when the type's shape cannot be ``n`` long)."""
    if qtype == A:
        return bytes(rng.randrange(1, 255) for _ in range(4)) if n == 4 else None
    if qtype == AAAA:
        return b"\x20\x01\x0d\xb8" + bytes(12) if n == 16 else None
    if qtype == HTTPS:
        return b"\x00\x01\x00" + b"\x00\x01\x00\x03\x02h2"[: max(n - 3, 0)] if n in (3, 10) else None
    if qtype in (TXT, NULL, PRIVATE):  # character-strings of ≤ 255 (TXT), or raw bytes
        if qtype != TXT:
            return bytes(rng.choices(alphabet, k=n)) if n > 0 else None
        out, left = b"", n
        while left > 1:
            k = min(left - 1, 255)
            out += bytes([k]) + bytes(rng.choices(alphabet, k=k))
            left -= k + 1
        return out if left == 0 else None
    pre = {MX: 2, SRV: 6}.get(qtype, 0 if qtype in (CNAME, PTR, NS) else -1)
    if pre < 0 or n - pre < 3:
        return None
    if n - pre > 255:
        return None
    return bytes(pre) + _wire(_fill(n - pre - 2, rng, None if alphabet == _LOWER else alphabet))


def _response(size: int, rcode: int, qlabels: list[bytes], qtype: int, opt: bool, answer: int,
              rng: random.Random, alphabet: bytes) -> bytes | None:  # fmt: skip
    """Header, the question, a CNAME filling the space (when there is some), ``answer`` bytes of ``qtype`` data (no
    answer when ``rcode``), and the OPT when ``opt``: exactly ``size`` bytes or None."""
    q = _wire(qlabels) + qtype.to_bytes(2, "big") + b"\x00\x01"
    rest = size - HEADER_B - len(q) - (OPT_B if opt else 0)
    rrs: list[bytes] = []
    if rcode == 0 and answer >= 0:
        last = _rdata(qtype, answer, rng, alphabet)
        if last is None or rest < RR_FIXED_B + answer:
            return None
        spare = rest - RR_FIXED_B - answer
        while spare >= RR_FIXED_B + 3:  # a CNAME chain takes up the space (each name ≤ 200 bytes on the wire)
            k = min(spare - RR_FIXED_B, 200)
            if 0 < spare - RR_FIXED_B - k < RR_FIXED_B + 3:
                k -= RR_FIXED_B + 3
            rrs.append(_rr(CNAME, _wire(_fill(k - 2, rng, _LOWER)), 60))
            spare -= RR_FIXED_B + k
        if spare:
            return None
        rrs.append(_rr(qtype, last, 300 if alphabet == _LOWER else 0))  # tunnels answer uncacheably
    elif SOA_FIXED_B + 1 <= rest <= SOA_FIXED_B + 200:  # NXDOMAIN with the zone's SOA in the authority section
        rrs.append(_rr(SOA, _wire(_fill(rest - SOA_FIXED_B, rng, None)) + b"\x00" + bytes(20), 900))
    elif rest:
        return None
    counts = (1, 0 if rcode else len(rrs), len(rrs) if rcode else 0, 1 if opt else 0)  # qd, an, ns, ar
    head = b"\x00\x00" + (0x8180 | rcode).to_bytes(2, "big") + b"".join(c.to_bytes(2, "big") for c in counts)
    out = head + q + b"".join(rrs) + (_opt(-1) if opt else b"")
    return out if len(out) == size else None


def _benign(direction: int, size: int, variant: int) -> bytes | None:
    _, _, opt, nx, _ = (int(x) for x in _benign_table()[variant % BENIGN_VARIANTS])
    if direction == 0:
        n = size - HEADER_B - QTAIL_B - 2
        if n - OPT_B > 120:  # larger than any lookup: a short name, the rest EDNS padding (RFC 7830)
            labels, t = benign_name(variant, 20 + variant % 40)
            return _query(labels, t, True, size, pad=True)
        for use_opt in (bool(opt), not opt):
            labels, t = benign_name(variant, n - (OPT_B if use_opt else 0))
            if sum(len(x) + 1 for x in labels) >= 2:
                q = _query(labels, t, use_opt, size)
                if q is not None:
                    return q
        return None
    rng = random.Random(variant * 7 + size)
    labels, t = benign_name(variant, 12 + variant % 24)
    answer = {A: 4, AAAA: 16, HTTPS: 10, PTR: 20, SRV: 20, TXT: 40, MX: 16}.get(t, 4)
    for n in (12 + variant % 24, 12, 6, 1):
        labels, t = benign_name(variant, n)
        for rcode, ans, o in ((3 if nx else 0, answer, bool(opt)), (0, answer, False), (3, 0, False)):
            out = _response(size, rcode, labels, t, o, ans, rng, _LOWER)
            if out is not None:
                return out
    labels, t = benign_name(variant, size - HEADER_B - QTAIL_B - 2)  # small: an empty answer (NODATA)
    return _response(size, 3 if nx else 0, labels, t, False, -1, rng, _LOWER)


def _tunnel(app: int, direction: int, size: int, variant: int) -> bytes | None:
    rng = random.Random(app * 100_003 + size * 7 + direction * 3 + variant)
    qtype = _tunnel_qtype(app, variant)
    opt = app != APP_DNS_DNSCAT2  # iodine and dnstt ask for large answers with EDNS0
    alphabet = _HEX if app == APP_DNS_DNSCAT2 else _B128 if app != APP_DNS_DNSTT else _B32
    if direction == 0:
        return _query(_tunnel_labels(app, size - HEADER_B - QTAIL_B - 2 - (OPT_B if opt else 0), rng), qtype, opt,
                      size)  # fmt: skip
    # the answer echoes a question of up to 60 characters and carries the rest as data in the queried type
    for n in (60, 40, 30):
        labels = _tunnel_labels(app, n, rng)
        q_b = HEADER_B + sum(len(x) + 1 for x in labels) + 1 + QTAIL_B + (OPT_B if opt else 0)
        for ans in (size - q_b - RR_FIXED_B, 16):
            out = _response(size, 0, labels, qtype, opt, ans, rng, alphabet)
            if out is not None:
                return out
    return None


def dns_message(app: int, direction: int, size: int, variant: int) -> bytes | None:
    """A query (direction 0) or response of exactly ``size`` bytes for the DNS payload style ``app`` (the
    transaction id, first two bytes, is patched per packet by the writer); None when no message is that size."""
    if app in TUNNEL_APPS:
        return _tunnel(app, direction, size, variant)
    return _benign(direction, size, variant)


def question_end(message: bytes) -> int:
    """Bytes from the message's start to the end of its first question (0 when it has none that parses)."""
    p = HEADER_B
    while p < len(message):
        n = message[p]
        if n == 0:
            return p + 1 + QTAIL_B if p + 1 + QTAIL_B <= len(message) else 0
        if n > 63:
            return 0
        p += 1 + n
    return 0


def dns_variant(conn: np.ndarray, seq: np.ndarray, app: np.ndarray) -> np.ndarray:
    """Per packet: the variant of its DNS template, the same for a query and its answer (same connection and
    round): one of :data:`BENIGN_VARIANTS` for a lookup (a multiplicative hash), the record type for dnscat2, 0
    for the other tunnels (one type per session)."""
    h = conn.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ seq.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    h ^= h >> np.uint64(29)
    v = ((h * np.uint64(0xBF58476D1CE4E5B9)) >> np.uint64(40)).astype(np.int64) % BENIGN_VARIANTS
    return np.where(np.isin(app, TUNNEL_APPS), np.where(app == APP_DNS_DNSCAT2, v % 3, 0), v)
