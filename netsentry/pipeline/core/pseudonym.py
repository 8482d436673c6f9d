"""Keyed, prefix-preserving pseudonyms for IP addresses in tables, text and JSON (Crypto-PAn style).

Operators share findings, reports and exported tables; :class:`Pseudonymizer` replaces every IP
address in them by a stable pseudonym that depends on a secret key.

Construction (Xu et al., *Prefix-preserving IP address anonymization*, the scheme behind Crypto-PAn,
with a keyed BLAKE2b as the pseudo-random function instead of AES)::

    out_bit[i] = in_bit[i] XOR f(mode, i, in_bits[0:i])

where ``f`` is one bit of ``blake2b(key=K, data=bytes([mode, i]) + prefix16)``; ``prefix16`` is the
16-byte stored address with every bit from ``i`` on cleared, ``K`` is derived from the user's key,
``mode`` is 4 or 6. IPv4 (stored IPv4-mapped, ``::ffff:a.b.c.d``) flips only bits 96..127, so IPv4
stays IPv4; IPv6 flips all 128 bits. Because bit ``i`` is flipped by a function of the bits before
it, two addresses that share a ``k``-bit prefix get pseudonyms that share exactly a ``k``-bit prefix
(subnets stay subnets) and the map is a bijection. The all-zero address (``::``, "no address") is
kept. An IPv6 pseudonym lands in the IPv4-mapped range or on ``::`` with probability 2**-96 per
address; that is not corrected.

Cost: one PRF call per node of the binary trie of the distinct addresses (a /24 with all 256 hosts
costs 24 + 255 calls), memoized across calls up to :data:`MEMO_MAX` entries.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.core.schemas import ip16_array, ip16_numpy

KEY_ENV = "NETSENTRY_PSEUDONYM_KEY"
MIN_KEY_BYTES = 16
MEMO_MAX = 1 << 19
"""Prefix memo entries kept across calls (~50 MB at most); the memo is cleared when it grows past this."""

_V4_PREFIX = bytes(10) + b"\xff\xff"
# Number of leading zero bits of a byte (CLZ8[0] is unused: distinct rows always differ somewhere).
_CLZ8 = np.array([8 - b.bit_length() for b in range(256)], dtype=np.int64)
# _MASKS[L]: 16-byte mask keeping the first L bits.
_MASKS = np.packbits(np.tri(129, 128, -1, dtype=np.uint8), axis=1)

# Scrub rule (see Pseudonymizer.scrub). Lookarounds keep tokens whole: a candidate must not touch a
# letter, digit or dot (IPv4) / letter, digit, dot or colon (IPv6) on its left, nor a letter or digit
# (or ".<letter or digit>") on its right. Possessive quantifiers stop backtracking into shorter tokens.
_LEFT4 = r"(?<![0-9A-Za-z.])"
_LEFT6 = r"(?<![0-9A-Za-z.:])"
_RIGHT = r"(?![0-9A-Za-z]|\.[0-9A-Za-z])"
_SCRUB_RE = re.compile(
    rf"{_LEFT4}(?P<arpa>\d{{1,3}}(?:\.\d{{1,3}}){{3}})(?P<arpa_sfx>\.in-addr\.arpa)(?![0-9A-Za-z-])"
    rf"|{_LEFT6}(?P<v6>(?=[0-9A-Fa-f]{{0,4}}:[0-9A-Fa-f]{{0,4}}:)[0-9A-Fa-f:]++(?:\.\d{{1,3}}){{0,3}}+)"
    rf"(?P<len6>/\d{{1,3}}(?![0-9.]))?+{_RIGHT}"
    rf"|{_LEFT4}(?P<v4>\d{{1,3}}(?:\.\d{{1,3}}){{3}})(?P<len4>/\d{{1,2}}(?![0-9.]))?+{_RIGHT}",
    re.IGNORECASE | re.ASCII,
)


def load_key(path: Path | None) -> bytes:
    """The pseudonym key: a file's raw bytes (one trailing newline stripped), or ``$NETSENTRY_PSEUDONYM_KEY``.

    Either must hold at least 16 bytes (characters for the variable, UTF-8 encoded); otherwise
    :class:`ConfigError`. The same secret gives the same key from either source.
    """
    if path is not None:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise ConfigError(
                f"pseudonym key file not found; expected a file of at least {MIN_KEY_BYTES} secret bytes",
                path=str(path),
            ) from None
        except OSError as e:
            raise ConfigError(
                f"cannot read pseudonym key file ({e.strerror or e}); expected a readable file of at least "
                f"{MIN_KEY_BYTES} secret bytes",
                path=str(path),
            ) from None
        key = _strip_newline(data)
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"pseudonym key file holds {len(key)} bytes; expected at least {MIN_KEY_BYTES}", path=str(path)
            )
        return key
    text = os.environ.get(KEY_ENV)
    if not text:
        raise ConfigError(
            f"{KEY_ENV} is not set; expected a secret of at least {MIN_KEY_BYTES} characters (or give a key file)"
        )
    text = _strip_newline(text.encode("utf-8")).decode("utf-8")
    if len(text) < MIN_KEY_BYTES:
        raise ConfigError(f"{KEY_ENV} holds {len(text)} characters; expected at least {MIN_KEY_BYTES}")
    return text.encode("utf-8")


def _strip_newline(b: bytes) -> bytes:
    if b.endswith(b"\r\n"):
        return b[:-2]
    return b[:-1] if b.endswith(b"\n") else b


def _unique_rows(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 16)`` uint8 → (distinct rows sorted bytewise, index of each input row among them).

    Hash-based (``pd.factorize`` on the two 8-byte words, then on the pair): ~10x faster than
    ``np.unique`` over 16-byte rows; only the distinct rows are sorted.
    """
    w = raw.view(np.uint64)  # two native words a row: equal rows ⇔ equal word pairs
    c_hi, _ = pd.factorize(w[:, 0])
    c_lo, u_lo = pd.factorize(w[:, 1])
    codes, uniq = pd.factorize(c_hi.astype(np.int64) * len(u_lo) + c_lo)
    first = np.empty(len(uniq), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    rows, order = _sort_rows(raw[first])
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rows, rank[codes]


def _sort_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted bytewise (as 128-bit big-endian numbers) and the permutation that sorts them."""
    be = rows.view(">u8").astype(np.uint64)
    order = np.lexsort((be[:, 1], be[:, 0]))
    return rows[order], order


class Pseudonymizer:
    """Prefix-preserving keyed pseudonyms for stored (16-byte) and textual IP addresses.

    Deterministic for a key, different across keys, a bijection on IPv4 and on IPv6; IPv4 stays
    IPv4 and the all-zero address is kept. ``prf_calls`` counts PRF evaluations (for tests and tuning).
    """

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray) or len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"pseudonym key must be at least {MIN_KEY_BYTES} bytes")
        k = hashlib.blake2b(bytes(key), digest_size=64, person=b"netsentry-pan").digest()
        self._prf = hashlib.blake2b(key=k, digest_size=1)
        # A short public id of the key, to record which key made a pseudonymized output.
        self.fingerprint = hashlib.blake2b(k, digest_size=4, person=b"netsentry-fp").hexdigest()
        self._memo: dict[bytes, int] = {}  # PRF input → bit
        self._cache: dict[bytes, bytes] = {}  # address → pseudonym, for text, scrub and JSON
        self.prf_calls = 0

    # --- addresses -------------------------------------------------------------------------------

    def ip16(self, raw: np.ndarray) -> np.ndarray:
        """``(n, 16)`` uint8 stored addresses → their pseudonyms, same shape (a new array)."""
        raw = np.ascontiguousarray(raw, dtype=np.uint8)
        if raw.ndim != 2 or raw.shape[1] != 16:
            raise ValueError(f"expected an (n, 16) uint8 array, got shape {raw.shape}")
        if len(raw) == 0:
            return raw.copy()
        uniq, inverse = _unique_rows(raw)
        return self._sorted_unique(uniq)[inverse]

    def _sorted_unique(self, rows: np.ndarray) -> np.ndarray:
        """Pseudonyms of distinct rows sorted bytewise."""
        v4 = (rows[:, :10] == 0).all(axis=1) & (rows[:, 10] == 0xFF) & (rows[:, 11] == 0xFF)
        v6 = ~v4 & rows.any(axis=1)
        flips = np.zeros_like(rows)
        for sel, mode, first_bit in ((v4, 4, 96), (v6, 6, 0)):
            if sel.any():
                flips[sel] = self._flips(rows[sel], mode, first_bit)
        return rows ^ flips

    def _flips(self, rows: np.ndarray, mode: int, first_bit: int) -> np.ndarray:
        """XOR masks for distinct sorted rows: bit ``i`` (``i >= first_bit``) is ``f(mode, i, prefix_i)``."""
        m = len(rows)
        x = rows[1:] ^ rows[:-1]
        byte = (x != 0).argmax(axis=1)
        common = np.empty(m, dtype=np.int64)  # bits shared with the previous row
        common[0] = -1
        common[1:] = byte * 8 + _CLZ8[x[np.arange(m - 1), byte]]
        flips = np.zeros((m, 16), dtype=np.uint8)
        for i in range(first_bit, 128):
            starts = np.flatnonzero(common < i)  # rows where a new i-bit prefix begins (sorted input)
            bits = self._prf_bits(mode, i, rows[starts] & _MASKS[i])
            flips[:, i >> 3] |= np.repeat(bits, np.diff(starts, append=m)) << (7 - (i & 7))
        return flips

    def _prf_bits(self, mode: int, i: int, prefixes: np.ndarray) -> np.ndarray:
        memo = self._memo
        if len(memo) > MEMO_MAX:
            memo.clear()
        head = bytes((mode, i))
        buf = prefixes.tobytes()
        out = []
        for j in range(0, len(buf), 16):
            msg = head + buf[j : j + 16]
            bit = memo.get(msg)
            if bit is None:
                h = self._prf.copy()
                h.update(msg)
                bit = memo[msg] = h.digest()[0] & 1
                self.prf_calls += 1
            out.append(bit)
        return np.array(out, dtype=np.uint8)

    def _distinct(self, rows: np.ndarray) -> np.ndarray:
        """Pseudonyms of distinct rows in any order (skips the hashing pass of :meth:`ip16`)."""
        srt, order = _sort_rows(rows)
        out = np.empty_like(rows)
        out[order] = self._sorted_unique(srt)
        return out

    def packed(self, b: bytes) -> bytes:
        """One stored 16-byte address → its pseudonym (cached)."""
        out = self._cache.get(b)
        if out is None:
            self._warm([b])
            out = self._cache[b]
        return out

    def _warm(self, addrs: Iterable[bytes]) -> None:
        """Compute the pseudonyms of stored addresses missing from the cache, in one batch."""
        todo = [a for a in dict.fromkeys(addrs) if a not in self._cache]
        if not todo:
            return
        if len(self._cache) + len(todo) > MEMO_MAX:
            self._cache.clear()
        res = self._distinct(np.frombuffer(b"".join(todo), dtype=np.uint8).reshape(-1, 16))
        self._cache.update((a, res[k].tobytes()) for k, a in enumerate(todo))

    def text(self, addr: str) -> str:
        """IPv4/IPv6 text → pseudonym text of the same family (an IPv6 zone ``%eth0`` is kept); anything
        else is returned unchanged."""
        return self.texts([addr])[0]

    def texts(self, values: Iterable[str]) -> list[str]:
        """:meth:`text` over many values, computing the distinct addresses in one batch."""
        values = list(values)
        parsed = {v: b for v in dict.fromkeys(x for x in values if isinstance(x, str)) if (b := _packed16(v))}
        self._warm(parsed.values())
        rendered = {v: _render(self.packed(b), v) + (v[v.index("%") :] if "%" in v else "") for v, b in parsed.items()}
        return [rendered.get(v, v) if isinstance(v, str) else v for v in values]

    # --- free text and containers ----------------------------------------------------------------

    def scrub(self, s: str) -> str:
        """Replace every IPv4/IPv6 literal in free text by its pseudonym.

        Rule: a candidate is a dotted quad ``d.d.d.d`` (1-3 digits each) or a run of hex digits and
        colons holding two colons within its first ten characters (optionally ending in a dotted
        IPv4 tail). It must not have a letter, digit or ``.`` (IPv6 also ``:``) right before it, nor
        a letter, digit or ``.<letter/digit>`` right after it. It is replaced only if
        :mod:`ipaddress` accepts it (so ``300.1.1.1``, ``010.0.0.1``, ``14:02:05``, MACs stay).
        A ``/len`` suffix is kept; when the address is a network (host bits zero) the pseudonym is
        masked to ``len`` so ``10.1.1.0/24`` becomes the pseudonym network of ``10.1.1.x``.
        ``d.c.b.a.in-addr.arpa`` names are pseudonymized too. Not recognised: bracket-less
        ``addr:port`` for IPv6 (read as part of the address), ``ip6.arpa`` nibble names,
        addresses glued to letters (``host10.0.0.1``), integer or hex-encoded addresses.
        """
        if not isinstance(s, str) or not s:
            return s
        return _SCRUB_RE.sub(self._scrub_match, s)

    def scrub_many(self, values: Iterable[str | None]) -> list[str | None]:
        """:meth:`scrub` over many values (``None`` kept), pseudonymizing all their addresses in one batch."""
        values = list(values)
        found: list[bytes] = []
        for v in values:
            if isinstance(v, str):
                for m in _SCRUB_RE.finditer(v):
                    addr = ".".join(reversed(m["arpa"].split("."))) if m["arpa"] is not None else m["v6"] or m["v4"]
                    if b := _packed16(addr):
                        found.append(b)
        self._warm(found)
        return [self.scrub(v) if isinstance(v, str) else v for v in values]

    def _scrub_match(self, m: re.Match[str]) -> str:
        if m["arpa"] is not None:
            rev = ".".join(reversed(m["arpa"].split(".")))
            new = self.text(rev)
            return m[0] if new == rev else ".".join(reversed(new.split("."))) + m["arpa_sfx"]
        addr, plen = (m["v6"], m["len6"]) if m["v6"] is not None else (m["v4"], m["len4"])
        b = _packed16(addr)
        if b is None:
            return m[0]
        new = self.packed(b)
        if plen is not None:
            n = int(plen[1:])
            bits = 32 if m["v4"] is not None else 128
            if n <= bits:
                mask = _MASKS[n + 128 - bits].tobytes()
                if bytes(a & k for a, k in zip(b, mask, strict=True)) == b:  # a network literal
                    new = bytes(a & k for a, k in zip(new, mask, strict=True))
        return _render(new, addr) + (plen or "")

    def json_value(self, v: Any) -> Any:
        """Recursively scrub strings (values and keys) in dicts, lists and tuples; 16-byte bytes are pseudonymized."""
        if isinstance(v, str):
            return self.scrub(v)
        if isinstance(v, dict):
            return {self.scrub(k) if isinstance(k, str) else k: self.json_value(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return type(v)(self.json_value(x) for x in v)
        if isinstance(v, bytes) and len(v) == 16:
            return self.packed(v)
        return v

    # --- tables ----------------------------------------------------------------------------------

    def table(self, t: pa.Table) -> pa.Table:
        """Pseudonymize a table: ``binary(16)`` columns mapped, string and dictionary<string> columns
        scrubbed (dictionary values only), others untouched; the schema is kept exactly."""
        ip_cols = [i for i, f in enumerate(t.schema) if _is_ip16(f.type)]
        cols = list(t.columns)
        if ip_cols and t.num_rows:
            raws = [ip16_numpy(t.column(i)) for i in ip_cols]
            out = self.ip16(np.concatenate(raws))
            for k, i in enumerate(ip_cols):
                n = t.num_rows
                arr = ip16_array(out[k * n : (k + 1) * n])
                col = t.column(i)
                if col.null_count:
                    arr = pc.if_else(col.is_valid(), arr, pa.scalar(None, type=col.type))
                cols[i] = pa.chunked_array([arr], type=col.type) if not isinstance(arr, pa.ChunkedArray) else arr
        for i, f in enumerate(t.schema):
            if _is_text(f.type):
                cols[i] = self._scrub_strings(t.column(i))
            elif pa.types.is_dictionary(f.type) and _is_text(f.type.value_type):
                cols[i] = pa.chunked_array([self._scrub_dictionary(c) for c in t.column(i).chunks], type=f.type)
        return pa.Table.from_arrays(cols, schema=t.schema)

    def _scrub_strings(self, col: pa.ChunkedArray) -> pa.ChunkedArray:
        work = col.cast(pa.large_string()) if pa.types.is_string_view(col.type) else col  # no hash kernels
        uniq = pc.unique(work)
        vals = uniq.to_pylist()
        new = self.scrub_many(vals)
        if new == vals:
            return col
        out = pc.take(pa.array(new, type=work.type), pc.index_in(work, value_set=uniq))
        return out.cast(col.type) if work is not col else out

    def _scrub_dictionary(self, arr: pa.DictionaryArray) -> pa.DictionaryArray:
        vals = arr.dictionary.to_pylist()
        new = self.scrub_many(vals)
        if new == vals:
            return arr
        return pa.DictionaryArray.from_arrays(
            arr.indices, pa.array(new, type=arr.dictionary.type), ordered=arr.type.ordered
        )

    def frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """Pseudonymize a DataFrame copy: string/object values scrubbed (16-byte ``bytes`` mapped,
        dicts and lists via :meth:`json_value`), categorical string categories scrubbed; index untouched."""
        out = df.copy()
        for j in range(out.shape[1]):
            s = out.iloc[:, j]
            if isinstance(s.dtype, pd.CategoricalDtype):
                cats = s.cat.categories
                new = [self.json_value(c) for c in cats]
                if len(set(new)) == len(new):
                    s = s.cat.rename_categories(new)
                else:  # scrubbing merged categories: rebuild
                    s = pd.Series(pd.Categorical(s.map(dict(zip(cats, new, strict=True)))), index=s.index)
            elif pd.api.types.is_string_dtype(s.dtype) or s.dtype == object:
                s = self._object_series(s)
            else:
                continue
            out.isetitem(j, s)
        return out

    def _object_series(self, s: pd.Series) -> pd.Series:
        try:
            codes, uniq = pd.factorize(s, use_na_sentinel=True)
        except TypeError:  # unhashable values (dicts, lists)
            return s.map(self.json_value)
        raw16 = [v for v in uniq if isinstance(v, bytes) and len(v) == 16]
        strs = [v for v in uniq if isinstance(v, str)]
        mapped: dict[Any, Any] = dict(zip(strs, self.scrub_many(strs), strict=True))
        if raw16:
            res = self._distinct(np.frombuffer(b"".join(raw16), dtype=np.uint8).reshape(-1, 16))
            mapped.update((v, res[k].tobytes()) for k, v in enumerate(raw16))
        new = np.empty(len(uniq) + 1, dtype=object)  # filled one by one: tuples must stay scalars
        for k, v in enumerate(uniq):
            new[k] = mapped[v] if v in mapped else self.json_value(v)
        values = new[codes]  # code -1 (missing) → the trailing None, restored below
        missing = codes < 0
        if missing.any():
            values[missing] = s.to_numpy(dtype=object)[missing]
        return pd.Series(values, index=s.index, name=s.name).astype(s.dtype)


def _is_ip16(t: pa.DataType) -> bool:
    return pa.types.is_fixed_size_binary(t) and t.byte_width == 16


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _packed16(s: str) -> bytes | None:
    """Text address → stored 16 bytes (an IPv6 zone ``%eth0`` is ignored), or None when ``s`` is not one."""
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return None
    return _V4_PREFIX + ip.packed if ip.version == 4 else ip.packed


def _render(b: bytes, like: str) -> str:
    """Stored pseudonym → text in the family and style of the original text ``like``."""
    if b[:12] == _V4_PREFIX:
        v4 = str(ipaddress.IPv4Address(b[12:]))
        if ":" not in like:
            return v4
        return "::ffff:" + v4 if "." in like else str(ipaddress.IPv6Address(b))
    return str(ipaddress.IPv6Address(b))
