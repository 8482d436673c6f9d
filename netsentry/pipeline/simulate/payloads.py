"""Payload bytes that protocol dissectors read cleanly: one template per (app, direction, first
segment, size), built once per distinct key and packed into a pool the frame writer copies from."""

from __future__ import annotations

import functools

import numpy as np

from netsentry.pipeline.simulate import conns as C
from netsentry.pipeline.simulate.dns_payloads import TUNNEL_APPS, dns_message, question_end

_HTTP_REQ = (
    b"GET /{path} HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (netsentry-sim)\r\nAccept: */*\r\n\r\n"
)
_HTTP_RESP = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/octet-stream\r\nConnection: keep-alive\r\n\r\n"
)
_SSH_BANNER = {0: b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n", 1: b"SSH-2.0-OpenSSH_8.9p1 Debian-3\r\n"}


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


@functools.lru_cache(maxsize=1 << 17)
def _template_and_sum(app: int, direction: int, first: bool, size: int, variant: int) -> tuple[bytes, int, int]:
    t = template(app, direction, first, size, variant)
    return t, _sum16(t), question_end(t) if is_dns_app(app) else 0


def is_dns_app(app: int | np.ndarray) -> bool | np.ndarray:
    """Payload styles that are DNS messages (a stub's lookups or a tunnel's)."""
    if isinstance(app, np.ndarray):
        return (app == C.APP_DNS) | np.isin(app, TUNNEL_APPS)
    return app == C.APP_DNS or app in TUNNEL_APPS


def template(app: int, direction: int, first: bool, size: int, variant: int = 0) -> bytes:
    """Payload of ``size`` bytes for one segment/datagram of ``app`` (``variant``: which DNS message)."""
    if size <= 0:
        return b""
    if app == C.APP_HTTP:
        out = _http(direction, first, size)
    elif app == C.APP_TLS:
        out = _tls(size)
    elif app == C.APP_SSH:
        out = _ssh(direction, first, size)
    elif is_dns_app(app):
        out = dns_message(app, direction, size, variant) or _filler(size, 0)
    elif app == C.APP_SQL:
        out = _pgsql(direction, size)
    elif app == C.APP_STRATUM:
        out = _stratum(direction, size)
    else:
        out = _filler(size, 0)
    assert len(out) == size, (app, direction, first, size, len(out))
    return out


def build_pool(
    app: np.ndarray, direction: np.ndarray, first: np.ndarray, size: np.ndarray, variant: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per packet: offset of its payload in the returned byte pool, the payload's one's-complement sum (for
    checksums) and, for a DNS message, where its first question ends (else 0). Templates are built once per
    distinct key."""
    key = (app.astype(np.int64) << 24) | (direction.astype(np.int64) << 23) | (first.astype(np.int64) << 22) | size
    if variant is not None:
        key |= variant.astype(np.int64) << 32
    uniq, inverse = np.unique(key, return_inverse=True)
    n = len(uniq)
    parts, offsets, sums, qend, at = [], np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64), 0
    for i, k in enumerate(uniq.tolist()):
        t, sums[i], qend[i] = _template_and_sum((k >> 24) & 0xFF, (k >> 23) & 1, bool((k >> 22) & 1), k & 0x3FFFFF,
                                                k >> 32)  # fmt: skip
        offsets[i] = at
        parts.append(t)
        at += len(t)
    pool = np.frombuffer(b"".join(parts) or b"\x00", dtype=np.uint8)
    return pool, offsets[inverse], sums[inverse], qend[inverse]


def _sum16(data: bytes) -> int:
    """Sum of big-endian 16-bit words (odd tail padded with zero), not folded."""
    a = np.frombuffer(data + (b"\x00" if len(data) % 2 else b""), dtype=">u2")
    return int(a.sum(dtype=np.int64))
