"""Partial aggregates keyed by integer codes and log histograms of delays: how the fault-window builder keeps
memory to the size of its output."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

_BINS_PER_DECADE = 200  # log histograms of delays: bins 1.2 % wide
_MIN_MS = 1e-3
_CONSOLIDATE = 48


class Partials:
    """Partial aggregates keyed by integer columns, consolidated now and then (sum; ``maxes`` by max)."""

    def __init__(self, keys: list[str], maxes: tuple[str, ...] = ()) -> None:
        self.keys, self.maxes = keys, maxes
        self._parts: list[pd.DataFrame] = []

    def add(self, frame: pd.DataFrame) -> None:
        if len(frame):
            self._parts.append(frame)
        if len(self._parts) > _CONSOLIDATE:
            self._parts = [self.frame()]

    def frame(self) -> pd.DataFrame:
        if not self._parts:
            return pd.DataFrame(columns=self.keys)
        df = pd.concat(self._parts, ignore_index=True)
        spec = {c: ("max" if c in self.maxes else "sum") for c in df.columns if c not in self.keys}
        return df.groupby(self.keys, as_index=False, sort=False).agg(spec)


class DistinctKeys:
    """Distinct rows of integer keys, deduplicated now and then: counts of distinct things that do not depend on
    how the input was chunked (a flow seen in two chunks of one window counts once)."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self._parts: list[pd.DataFrame] = []

    def add(self, columns: dict[str, np.ndarray]) -> None:
        frame = pd.DataFrame(columns, columns=self.keys)
        if len(frame):
            self._parts.append(frame.drop_duplicates())
        if len(self._parts) > _CONSOLIDATE:
            self._parts = [pd.concat(self._parts, ignore_index=True).drop_duplicates()]

    def count(self, by: list[str], name: str) -> pd.DataFrame:
        """Distinct rows per ``by`` group, as a ``by`` + ``name`` frame."""
        if not self._parts:
            return pd.DataFrame(columns=[*by, name])
        df = pd.concat(self._parts, ignore_index=True).drop_duplicates()
        return df.groupby(by, as_index=False, sort=False).size().rename(columns={"size": name})


def log_bin(ms: np.ndarray) -> np.ndarray:
    """Delays in ms → their log histogram bin."""
    return np.floor(np.log10(np.maximum(ms, _MIN_MS)) * _BINS_PER_DECADE).astype(np.int64)


def bin_value(b: np.ndarray) -> np.ndarray:
    """Geometric centre of a log bin; bins at the floor are the floor value (no negative delays)."""
    v = 10.0 ** ((b + 0.5) / _BINS_PER_DECADE)
    return np.where(b <= math.floor(math.log10(_MIN_MS) * _BINS_PER_DECADE), 0.0, v)


def hist_quantile(hist: pd.DataFrame, keys: list[str], q: float) -> pd.Series:
    """Nearest-rank ``q`` quantile per ``keys`` group of a (keys…, bin, n) histogram."""
    if hist.empty:
        return pd.Series([], index=pd.MultiIndex.from_arrays([[]] * len(keys), names=keys), dtype=np.float64)
    h = hist.groupby([*keys, "bin"], sort=True, as_index=False)["n"].sum()
    grp = h.groupby(keys, sort=False)["n"]
    cum, total = grp.cumsum().to_numpy(), grp.transform("sum").to_numpy()
    need = np.maximum(np.ceil(q * total), 1)
    pick = h[cum >= need].drop_duplicates(keys, keep="first")
    return pd.Series(bin_value(pick["bin"].to_numpy()), index=pd.MultiIndex.from_frame(pick[keys]))
