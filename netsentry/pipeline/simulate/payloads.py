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


_HEX = b"0123456789abcdef"
_STRATUM_CLIENT = (  # (first segment: subscribe/authorize or login, later segments: a share) per flavour
    (b'{"id":1,"method":"mining.subscribe","params":["cpuminer/2.5.1"]}\n'
     b'{"id":2,"method":"mining.authorize","params":["{X}.rig1","x"]}\n',
     b'{"id":4,"method":"mining.submit","params":["{X}.rig1","bf","00000001","504e86ed","b2957c02"]}\n'),
    (b'{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"4{X}","pass":"x","agent":"XMRig/6.21.0"}}\n',
     b'{"id":2,"jsonrpc":"2.0","method":"submit","params":{"id":"1be0b7b6","job_id":"8Vz","nonce":"d0030040",'
     b'"result":"{X}"}}\n'),
    (b'{"id":1,"jsonrpc":"2.0","method":"eth_submitLogin","params":["0x{X}"],"worker":"rig1"}\n',
     b'{"id":4,"jsonrpc":"2.0","method":"eth_submitWork","params":["0x00000001a2b3c4d5","0x{X}","0x9c2b7f1e"]}\n'),
)  # fmt: skip
_STRATUM_JOB = (  # the work a pool pushes, per flavour (eth-proxy pushes work as an id-0 result)
    b'{"id":null,"method":"mining.notify","params":["bf","{X}","01000000",[],"00000002","1c2ac4af","504e86b9",true]}\n',
    b'{"jsonrpc":"2.0","method":"job","params":{"blob":"{X}","job_id":"8Vz","target":"b88d0600","algo":"rx/0"}}\n',
    b'{"id":0,"jsonrpc":"2.0","result":["0x{X}","0x5eed","0x0000000112e0be82"]}\n',
)
_STRATUM_ANSWER = (  # the pool's answer to the first call, then to a share
    (b'{"id":1,"result":[[["mining.notify","ae6812eb4cd7735a"]],"08000002",4],"error":null}\n{"id":2,"result":true}\n',
     b'{"id":4,"result":true,"error":null}\n'),
    (b'{"id":1,"jsonrpc":"2.0","error":null,"result":{"id":"1be0b7b6","job":{"blob":"{X}","job_id":"8Vy",'
     b'"target":"b88d0600"},"status":"OK"}}\n',
     b'{"id":2,"jsonrpc":"2.0","error":null,"result":{"status":"OK"}}\n'),
    (b'{"id":1,"jsonrpc":"2.0","result":true}\n', b'{"id":4,"jsonrpc":"2.0","result":true}\n'),
)  # fmt: skip


def _fill(template: bytes, size: int) -> bytes | None:
    """``template`` with its ``{X}`` hex field stretched to make ``size`` bytes (``None`` when it cannot fit)."""
    n = size - (len(template) - 3)
    return template.replace(b"{X}", (_HEX * (n // 16 + 1))[:n]) if n >= 8 and b"{X}" in template else None


def _padded(lines: bytes, size: int) -> bytes:
    """Whole answer lines repeated up to ``size``, the last stretched with JSON whitespace (cut when too short)."""
    if size <= len(lines):
        return lines[: size - 1] + b"\n"
    out = lines * ((size - 1) // len(lines))
    return out[:-1] + b" " * (size - len(out)) + b"\n"


def _stratum(direction: int, first: bool, size: int) -> bytes:
    """A mining pool session: the miner subscribes and authorizes (Stratum v1), logs in (CryptoNote) or submits its
    login (Ethereum) first, then submits shares; the pool answers, its first answer carrying work, and pushes new
    jobs with some answers. The flavour is picked from the segment size (constant per connection and direction)."""
    flavour, turn = size % 3, 0 if first else 1
    if direction == 0:
        call = _STRATUM_CLIENT[flavour][turn]
        out = _fill(call, size)
        return out if out is not None else _padded(call.replace(b"{X}", b""), size)
    answer = _STRATUM_ANSWER[flavour][turn]
    if b"{X}" not in answer and (first or (size // 3) % 2 == 0):
        answer += _STRATUM_JOB[flavour]
    out = _fill(answer, size)
    return out if out is not None else _padded(answer.split(b"\n")[0].replace(b"{X}", b"00") + b"\n", size)


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
        out = _stratum(direction, first, size)
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
