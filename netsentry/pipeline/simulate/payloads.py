"""Payload bytes that protocol dissectors read cleanly: one template per (app, direction, first
segment, size), built once per distinct key and packed into a pool the frame writer copies from."""

from __future__ import annotations

import functools

import numpy as np

from netsentry.pipeline.simulate import conns as C

_HTTP_REQ = (
    b"GET /{path} HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (netsentry-sim)\r\nAccept: */*\r\n\r\n"
)
_HTTP_RESP = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/octet-stream\r\nConnection: keep-alive\r\n\r\n"
)
_SSH_BANNER = {0: b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n", 1: b"SSH-2.0-OpenSSH_8.9p1 Debian-3\r\n"}
_B32 = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", dtype=np.uint8)
_WORDS = [b"www", b"api", b"cdn", b"mail", b"static", b"img", b"login", b"auth", b"update", b"time", b"db", b"svc"]


def _opaque(size: int, mul: int, add: int) -> bytes:
    """Bytes that look encrypted enough for a dissector (a fixed pattern, so output is deterministic)."""
    return ((np.arange(size, dtype=np.int64) * mul + add) & 0xFF).astype(np.uint8).tobytes()


def _filler(size: int, byte: int = 0x61) -> bytes:
    return bytes([byte]) * size


def _http(direction: int, first: bool, size: int) -> bytes:
    if not first:
        return _filler(size)
    if direction == 0:
        base = len(_HTTP_REQ) - len(b"{path}")
        if size < base + 1:
            return _filler(size)
        return _HTTP_REQ.replace(b"{path}", _filler(size - base, 0x70))
    if size < len(_HTTP_RESP):
        return _filler(size)
    return _HTTP_RESP + _filler(size - len(_HTTP_RESP))


def _tls(size: int) -> bytes:
    """Every segment is one TLS application-data record (type 23, TLS 1.2 framing)."""
    if size < 6:
        return _filler(size, 0)
    body = size - 5
    return bytes([0x17, 0x03, 0x03, body >> 8, body & 0xFF]) + _opaque(body, 131, 7)


def _ssh(direction: int, first: bool, size: int) -> bytes:
    """The version banner (its comment stretched to fill a short segment), then opaque bytes."""
    banner = _SSH_BANNER[direction]
    if not first or size < 12:
        return _opaque(size, 97, 13)
    if size <= 255:  # the whole segment is the banner line
        return (
            banner[:8] + b"OpenSSH_9.6 " + b"x" * (size - 22) + b"\r\n"
            if size >= 22
            else b"SSH-2.0-" + b"x" * (size - 10) + b"\r\n"
        )
    return banner + _opaque(size - len(banner), 97, 13)


def _qname(size: int, rng: np.random.Generator) -> bytes:
    """A DNS name encoding to exactly ``size`` bytes (labels ≤ 63): words when short, base32 when long."""
    out = b""
    left = size - 1  # the root label
    while left >= 2:
        n = min(left - 1, 63)
        if left - (n + 1) == 1:  # never leave a single byte: no label fits in it
            n -= 1
        if size <= 40 and n <= 12:
            w = _WORDS[int(rng.integers(len(_WORDS)))]
            label = (w * (n // len(w) + 1))[:n]
        else:
            label = bytes(_B32[rng.integers(0, len(_B32), n)])
        out += bytes([n]) + label
        left -= n + 1
    return out + b"\x00"


def _dns(direction: int, size: int) -> bytes:
    """A query (direction 0) or a response with one TXT answer (direction 1) of exactly ``size`` bytes;
    the transaction id (first two bytes) is patched per packet by the writer."""
    rng = np.random.default_rng(size * 2 + direction)
    if direction == 0:
        qlen = max(size - 12 - 4, 2)
        body = b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + _qname(qlen, rng) + b"\x00\x10\x00\x01"
        return body if len(body) == size else body[:size] if len(body) > size else body + b"\x00" * (size - len(body))
    q = _qname(20, rng) + b"\x00\x10\x00\x01"
    head = b"\x00\x00\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + q
    rr_fixed = 2 + 2 + 2 + 4 + 2  # name pointer, type, class, ttl, rdlength
    rdlen = size - len(head) - rr_fixed
    if rdlen < 2:
        return _dns(0, size)  # too small for an answer: a bare query-shaped message
    txt = b""
    left = rdlen
    while left > 0:
        n = min(left - 1, 255)
        txt += bytes([n]) + bytes(_B32[rng.integers(0, len(_B32), n)])
        left -= n + 1
    return head + b"\xc0\x0c\x00\x10\x00\x01\x00\x00\x01\x2c" + bytes([rdlen >> 8, rdlen & 0xFF]) + txt


def _pgsql(direction: int, size: int) -> bytes:
    """One complete PostgreSQL message per segment (so no dissector waits for the rest of one):
    a simple query from the client, a one-column data row from the server."""
    if size < 12:
        return _filler(size, 0)
    if direction == 0:
        text = b"SELECT * FROM orders WHERE id = " + b"1" * (size - 1 - 4 - 33 - 1) + b";"
        return b"Q" + (size - 1).to_bytes(4, "big") + text[: size - 6] + b"\x00"
    value = size - 1 - 4 - 2 - 4
    return b"D" + (size - 1).to_bytes(4, "big") + b"\x00\x01" + value.to_bytes(4, "big") + _filler(value, 0x76)


def _stratum(direction: int, size: int) -> bytes:
    line = b'{"id":1,"method":"mining.submit","params":["w1","0","00","5f","0"]}' if direction == 0 else \
        b'{"id":1,"result":true,"error":null}'  # fmt: skip
    out = (line + b"\n") * (size // (len(line) + 1) + 1)
    return out[: size - 1] + b"\n" if size else b""


@functools.lru_cache(maxsize=65536)
def _template_and_sum(app: int, direction: int, first: bool, size: int) -> tuple[bytes, int]:
    t = template(app, direction, first, size)
    return t, _sum16(t)


def template(app: int, direction: int, first: bool, size: int) -> bytes:
    """Payload of ``size`` bytes for one segment/datagram of ``app``."""
    if size <= 0:
        return b""
    if app == C.APP_HTTP:
        out = _http(direction, first, size)
    elif app == C.APP_TLS:
        out = _tls(size)
    elif app == C.APP_SSH:
        out = _ssh(direction, first, size)
    elif app == C.APP_DNS:
        out = _dns(direction, size)
    elif app == C.APP_SQL:
        out = _pgsql(direction, size)
    elif app == C.APP_STRATUM:
        out = _stratum(direction, size)
    else:
        out = _filler(size, 0)
    assert len(out) == size, (app, direction, first, size, len(out))
    return out


def build_pool(
    app: np.ndarray, direction: np.ndarray, first: np.ndarray, size: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per packet: offset of its payload in the returned byte pool, and the payload's one's-complement
    sum (for checksums). Templates are built once per distinct key."""
    key = (app.astype(np.int64) << 24) | (direction.astype(np.int64) << 23) | (first.astype(np.int64) << 22) | size
    uniq, inverse = np.unique(key, return_inverse=True)
    parts, offsets, sums, at = [], np.empty(len(uniq), np.int64), np.empty(len(uniq), np.int64), 0
    for i, k in enumerate(uniq.tolist()):
        t, sums[i] = _template_and_sum(k >> 24, (k >> 23) & 1, bool((k >> 22) & 1), k & 0x3FFFFF)
        offsets[i] = at
        parts.append(t)
        at += len(t)
    pool = np.frombuffer(b"".join(parts) or b"\x00", dtype=np.uint8)
    return pool, offsets[inverse], sums[inverse]


def _sum16(data: bytes) -> int:
    """Sum of big-endian 16-bit words (odd tail padded with zero), not folded."""
    a = np.frombuffer(data + (b"\x00" if len(data) % 2 else b""), dtype=">u2")
    return int(a.sum(dtype=np.int64))
