"""Crypto-mining protocol messages: the ``stratum`` table, one row per TCP segment that opens with a mining
JSON-RPC call, holding only the kind of call (``method``), never a byte of the message.

A miner's pool session is one quiet connection that no flow feature tells from an ordinary client; its protocol
does. Methods come from the protocol specifications: Stratum v1 (slush pool's spec, BIP 310 ``mining.configure``;
every ``mining.*`` name is Stratum's namespace), the CryptoNote/XMRig stratum (``login``, ``job``, ``submit``,
``keepalived``) and Ethereum stratum/getwork (EthereumStratum and eth-proxy: ``eth_submitLogin``, ``eth_getWork``,
``eth_submitWork``, ``eth_submitHashrate``). The CryptoNote words are generic, so they count only with the fields
that protocol puts in ``params`` and a generic JSON-RPC API has no reason to: ``login`` with ``pass`` and
``agent`` (a web login names user and password but sends no miner agent), ``job`` with ``job_id`` and ``blob``
(the hashing blob), ``submit`` with ``job_id`` and ``nonce``, ``keepalived`` with the session ``id``.

A compiled kernel walks the segment's JSON objects (top-level keys only, strings and escapes honoured) over at
most :data:`MAX_SCAN_B` captured bytes; every read is bounds-checked and each step advances, so no loop runs away.
A name the capture cut short is no name (no row); a response carries no method (no row).
"""

from __future__ import annotations

import numba as nb
import numpy as np
import pyarrow as pa

from netsentry.pipeline.core.schemas import (
    STRATUM,
    STRATUM_AUTHORIZE,
    STRATUM_DIFFICULTY,
    STRATUM_GETWORK,
    STRATUM_JOB,
    STRATUM_OTHER,
    STRATUM_SUBMIT,
    STRATUM_SUBSCRIBE,
    message_table,
)

MAX_SCAN_B = 1460
"""Payload bytes read per segment: one full-size segment on a 1500-byte Ethernet path, so a message that fits a
segment is seen whole whatever its key order (a pool may put a long ``params`` before ``method``), while an
offloaded 64 KiB segment costs no more than a normal one."""
PACKET_COLUMNS = ("ts_ns", "vni", "ip_version", "src_ip", "dst_ip", "src_port", "dst_port")
"""The decoded packet columns a stratum row keeps."""

# params keys that qualify the CryptoNote words (bits)
_AGENT, _PASS, _JOB_ID, _BLOB, _NONCE, _SESSION_ID = 1, 2, 4, 8, 16, 32
_PARAM_KEYS = ((b"agent", _AGENT), (b"pass", _PASS), (b"job_id", _JOB_ID), (b"blob", _BLOB), (b"nonce", _NONCE),
               (b"id", _SESSION_ID))  # fmt: skip
_METHODS = (
    (b"mining.subscribe", STRATUM_SUBSCRIBE, 0),
    (b"mining.extranonce.subscribe", STRATUM_SUBSCRIBE, 0),
    (b"mining.authorize", STRATUM_AUTHORIZE, 0),
    (b"mining.notify", STRATUM_JOB, 0),
    (b"mining.submit", STRATUM_SUBMIT, 0),
    (b"mining.set_difficulty", STRATUM_DIFFICULTY, 0),
    (b"mining.suggest_difficulty", STRATUM_DIFFICULTY, 0),
    (b"mining.set_target", STRATUM_DIFFICULTY, 0),
    (b"mining.suggest_target", STRATUM_DIFFICULTY, 0),
    (b"login", STRATUM_AUTHORIZE, _PASS | _AGENT),
    (b"job", STRATUM_JOB, _JOB_ID | _BLOB),
    (b"submit", STRATUM_SUBMIT, _JOB_ID | _NONCE),
    (b"keepalived", STRATUM_OTHER, _SESSION_ID),
    (b"eth_submitLogin", STRATUM_AUTHORIZE, 0),
    (b"eth_getWork", STRATUM_GETWORK, 0),
    (b"eth_submitWork", STRATUM_GETWORK, 0),
    (b"eth_submitHashrate", STRATUM_GETWORK, 0),
)
"""(name, ``method`` code, params keys it needs). Any other ``mining.*`` name is :data:`STRATUM_OTHER`."""


def _packed(words: tuple[bytes, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Words → (their bytes end to end, start of each, length of each) for the kernel."""
    at = np.cumsum([0, *(len(w) for w in words)])[:-1].astype(np.int64)
    return np.frombuffer(b"".join(words), np.uint8).copy(), at, np.array([len(w) for w in words], np.int64)


_NAME_B, _NAME_AT, _NAME_LEN = _packed(tuple(m[0] for m in _METHODS))
_NAME_CODE = np.array([m[1] for m in _METHODS], np.int64)
_NAME_NEEDS = np.array([m[2] for m in _METHODS], np.int64)
_KEY_B, _KEY_AT, _KEY_LEN = _packed(tuple(k[0] for k in _PARAM_KEYS))
_KEY_BIT = np.array([k[1] for k in _PARAM_KEYS], np.int64)
_METHOD_KEY = np.frombuffer(b"method", np.uint8).copy()
_PARAMS_KEY = np.frombuffer(b"params", np.uint8).copy()
_NAMESPACE = np.frombuffer(b"mining.", np.uint8).copy()

_QUOTE, _BACKSLASH, _COLON = 0x22, 0x5C, 0x3A
_OPEN_OBJ, _CLOSE_OBJ, _OPEN_ARR, _CLOSE_ARR = 0x7B, 0x7D, 0x5B, 0x5D


@nb.njit(inline="always", cache=True)
def _is_ws(c):
    return c == 0x20 or c == 0x09 or c == 0x0A or c == 0x0D  # RFC 8259 whitespace


@nb.njit(cache=True)
def _skip_ws(b, q, e):
    while q < e and _is_ws(b[q]):
        q += 1
    return q


@nb.njit(cache=True)
def _equals(b, s, n, words, at, k, length):
    """``b[s:s+n]`` is word ``k`` of ``words`` (``at``/``length``: where each word starts and how long it is)."""
    if n != length[k]:
        return False
    w0 = at[k]
    for j in range(n):  # noqa: SIM110 (a plain loop compiles; a generator in all() does not)
        if b[s + j] != words[w0 + j]:
            return False
    return True


@nb.njit(cache=True)
def _starts_with(b, s, n, word):
    if n < word.shape[0]:
        return False
    for j in range(word.shape[0]):  # noqa: SIM110
        if b[s + j] != word[j]:
            return False
    return True


@nb.njit(cache=True)
def _string_end(b, q, e):
    """Index of the quote closing the string whose first byte is ``b[q]``; ``e`` when the capture ends first."""
    while q < e and b[q] != _QUOTE:
        q += 2 if b[q] == _BACKSLASH else 1
    return min(q, e)


@nb.njit(cache=True)
def _classify(b, s, n, keys):
    """The ``method`` code of the name ``b[s:s+n]`` given the params keys seen (bits); 0 when no mining method."""
    for k in range(_NAME_CODE.shape[0]):
        if _equals(b, s, n, _NAME_B, _NAME_AT, k, _NAME_LEN):
            need = _NAME_NEEDS[k]
            return _NAME_CODE[k] if (keys & need) == need else 0
    return STRATUM_OTHER if _starts_with(b, s, n, _NAMESPACE) else 0


@nb.njit(cache=True)
def _param_key_bit(b, s, n):
    for k in range(_KEY_BIT.shape[0]):
        if _equals(b, s, n, _KEY_B, _KEY_AT, k, _KEY_LEN):
            return _KEY_BIT[k]
    return 0


@nb.njit(cache=True)
def _object_method(b, q, e):
    """Walk the JSON object opening at ``b[q]`` (captured up to ``e``): (its ``method`` code, where it ends)."""
    depth, keys, name_at, name_len = 0, 0, -1, 0
    params_next, in_params = False, False
    while q < e:
        c = b[q]
        if c == _QUOTE:
            r = _string_end(b, q + 1, e)
            if r >= e:
                break
            t = _skip_ws(b, r + 1, e)
            if t < e and b[t] == _COLON and (depth == 1 or (in_params and depth == 2)):
                s, n = q + 1, r - q - 1
                if in_params:
                    keys |= _param_key_bit(b, s, n)
                else:
                    params_next = _starts_with(b, s, n, _PARAMS_KEY) and n == _PARAMS_KEY.shape[0]
                    v = _skip_ws(b, t + 1, e)
                    if n == _METHOD_KEY.shape[0] and _starts_with(b, s, n, _METHOD_KEY) and v < e and b[v] == _QUOTE:
                        w = _string_end(b, v + 1, e)
                        if w >= e:  # the name was cut: no name
                            break
                        name_at, name_len = v + 1, w - v - 1
                        q = w + 1
                        continue
                q = t + 1
                continue
            q = r + 1
            continue
        if c == _OPEN_OBJ or c == _OPEN_ARR:  # noqa: SIM109 (numba: plain comparisons)
            depth += 1
            if depth == 2:
                in_params = c == _OPEN_OBJ and params_next
        elif c == _CLOSE_OBJ or c == _CLOSE_ARR:  # noqa: SIM109
            depth -= 1
            if depth <= 1:
                in_params = False
            if depth <= 0:
                q += 1
                break
        q += 1
    code = _classify(b, name_at, name_len, keys) if name_at >= 0 else 0
    return code, q


@nb.njit(cache=True)
def summarize(b, at, end, payload_len, candidate, method):
    """``method[i]``: the mining method of the first JSON object in segment ``i`` that has one (payload from
    ``b[at[i]]``, captured up to ``end[i]``, ``payload_len[i]`` bytes on the wire); 0 when none."""
    for i in range(at.shape[0]):
        method[i] = 0
        p = at[i]
        if not candidate[i] or p < 0:
            continue
        e = min(end[i], p + payload_len[i], p + MAX_SCAN_B, b.shape[0])
        q = _skip_ws(b, p, e)
        while q < e and b[q] == _OPEN_OBJ:  # newline-delimited messages: the pool may answer, then push a job
            code, q = _object_method(b, q, e)
            if code != 0:
                method[i] = code
                break
            q = _skip_ws(b, q, e)


def stratum_rows(buf: np.ndarray, cols: dict[str, np.ndarray], rec_end: np.ndarray, ok: np.ndarray,
                 capture_point: str) -> pa.Table | None:  # fmt: skip
    """The stratum rows of a decoded batch (``ok``: its kept-packet mask; ``rec_end``: where each record's captured
    bytes end in ``buf``): TCP segments with payload, first fragments; ``None`` when none carries a mining method."""
    candidate = ok & (cols["proto"] == 6) & (cols["frag"] < 2) & (cols["l4_at"] >= 0) & (cols["payload_len"] > 0)
    if not candidate.any():
        return None
    method = np.zeros(len(candidate), np.uint8)
    at, wire = cols["l4_at"].astype(np.int64), cols["payload_len"].astype(np.int64)
    summarize(buf, at, rec_end.astype(np.int64), wire, candidate, method)
    keep = method > 0
    if not keep.any():
        return None
    return stratum_table({**{k: cols[k][keep] for k in PACKET_COLUMNS}, "method": method[keep]}, capture_point)


def stratum_table(cols: dict[str, np.ndarray], capture_point: str) -> pa.Table:
    """Packet columns and ``method`` → a table in the :data:`~netsentry.pipeline.core.schemas.STRATUM` contract."""
    return message_table(cols, capture_point, STRATUM)
