"""Vectorised array helpers shared by the fault-window modules: grouping rows by integer columns, counting per
group, sorted look-ups, hashing rows and flows, leave-one-out medians."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa

from netsentry.pipeline.core.hashing import FNV1A64_OFFSET, FNV1A64_PRIME


def group_rows(*cols: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Group rows by integer columns: (group index per row, each column's value per group)."""
    n = len(cols[0])
    if n == 0:
        return np.zeros(0, np.int64), [c[:0].astype(np.int64) for c in cols]
    if len(cols) == 1:
        codes, uniq = pd.factorize(cols[0])
        return codes.astype(np.int64), [uniq]
    lo = [int(c.min()) for c in cols]
    span = [int(c.max()) - m + 1 for c, m in zip(cols, lo, strict=True)]
    if math.prod(span) < 2**62:
        key = np.zeros(n, np.int64)
        for c, m, s in zip(cols, lo, span, strict=True):
            key = key * s + (c.astype(np.int64) - m)
        codes, uniq = pd.factorize(key)
        out = []
        for m, s in zip(reversed(lo), reversed(span), strict=True):
            out.append(uniq % s + m)
            uniq = uniq // s
        return codes.astype(np.int64), out[::-1]
    stacked = np.stack([c.astype(np.int64) for c in cols], axis=1)
    uniq, codes = np.unique(stacked, axis=0, return_inverse=True)
    return codes.ravel().astype(np.int64), [uniq[:, i] for i in range(len(cols))]


def count_per_group(
    codes: np.ndarray, n_groups: int, mask: np.ndarray | None = None, weights: np.ndarray | None = None
) -> np.ndarray:
    """Rows (those in ``mask``; summing ``weights`` when given) per group of :func:`group_rows` codes."""
    c = codes if mask is None else codes[mask]
    if weights is not None:
        w = weights if mask is None else weights[mask]
        return np.rint(np.bincount(c, weights=w.astype(np.float64), minlength=n_groups)).astype(np.int64)
    return np.bincount(c, minlength=n_groups).astype(np.int64)


def find_sorted(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``queries`` in ``sorted_keys`` and whether each is there."""
    pos = np.searchsorted(sorted_keys, queries)
    if len(sorted_keys) == 0:
        return pos, np.zeros(len(queries), bool)
    return pos, sorted_keys[np.minimum(pos, len(sorted_keys) - 1)] == queries


def distinct_rows(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a C-contiguous ``(n, w)`` uint8 array → (distinct rows, inverse index); hash-based."""
    n, w = key.shape
    enc = pa.FixedSizeBinaryArray.from_buffers(pa.binary(w), n, [None, pa.py_buffer(key)]).dictionary_encode()
    d = enc.dictionary
    uniq = np.frombuffer(d.buffers()[1], np.uint8, count=w * (len(d) + d.offset)).reshape(-1, w)[d.offset :]
    return uniq.copy(), enc.indices.to_numpy().astype(np.int64)


def dict_codes(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str]]:
    """A (dictionary or string) column → (int codes, names)."""
    if isinstance(col, pa.Array):
        col = pa.chunked_array([col])
    if not pa.types.is_dictionary(col.type):
        col = col.cast(pa.string()).dictionary_encode()
    if col.num_chunks == 0:
        return np.zeros(0, np.int64), []
    col = col.unify_dictionaries()
    codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in col.chunks]).astype(np.int64)
    return codes, col.chunk(0).dictionary.cast(pa.string()).to_pylist()


def flow_hash(vni: np.ndarray, src: np.ndarray, dst: np.ndarray, sport: np.ndarray, dport: np.ndarray,
              proto: np.ndarray) -> np.ndarray:  # fmt: skip
    """A 64-bit hash of the directed 5-tuple (+ VNI), to tell a packet's flow."""
    s, d = np.ascontiguousarray(src).view(">u8"), np.ascontiguousarray(dst).view(">u8")
    h = np.full(len(vni), FNV1A64_OFFSET, np.uint64)
    with np.errstate(over="ignore"):
        for w in (s[:, 0], s[:, 1], d[:, 0], d[:, 1], (sport.astype(np.uint64) << np.uint64(16)) | dport,
                  proto.astype(np.uint64) << np.uint64(32) | vni.astype(np.uint64)):  # fmt: skip
            h = (h ^ w.astype(np.uint64)) * FNV1A64_PRIME
        h ^= h >> np.uint64(31)
    return h


def loo_median(group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per row, the median of ``values`` over the other rows of its group (NaN values are left out;
    a NaN row gets its group's median). NaN when no other value exists."""
    n = len(values)
    out = np.full(n, np.nan)
    ok = np.flatnonzero(~np.isnan(values))
    if len(ok) == 0:
        return out
    order = ok[np.lexsort((values[ok], group[ok]))]
    g, v = group[order], values[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    sizes = np.diff(np.r_[starts, len(g)])
    start_of = np.repeat(starts, sizes)
    size_of = np.repeat(sizes, sizes)
    rank = np.arange(len(g)) - start_of
    others = size_of - 1  # values left when this row's is removed

    def pick(p: np.ndarray) -> np.ndarray:
        p = np.where(p >= rank, p + 1, p)  # skip the removed row
        return v[np.minimum(start_of + p, len(v) - 1)]

    loo = np.where(others > 0, (pick((others - 1) // 2) + pick(others // 2)) / 2, np.nan)
    out[order] = loo
    # rows without a value: their group's full median
    uniq_g, first = g[starts], starts
    full = (v[first + (sizes - 1) // 2] + v[first + sizes // 2]) / 2
    nan_rows = np.flatnonzero(np.isnan(values))
    if len(nan_rows):
        pos = np.searchsorted(uniq_g, group[nan_rows])
        hit = (pos < len(uniq_g)) & (uniq_g[np.minimum(pos, len(uniq_g) - 1)] == group[nan_rows])
        out[nan_rows[hit]] = full[pos[hit]]
    return out


def advance_last_ts(last_ts: dict[int, int], points: np.ndarray, ts: np.ndarray) -> None:
    """Move each capture point's latest timestamp seen (``last_ts``) on by a chunk's packets."""
    codes, (uniq_points,) = group_rows(points)
    last = np.full(len(uniq_points), np.iinfo(np.int64).min)
    np.maximum.at(last, codes, ts)
    for p, t in zip(uniq_points.tolist(), last.tolist(), strict=True):
        last_ts[p] = max(last_ts.get(p, t), t)
