"""Scoring feature windows with a logged model, and the severity rules shared by both kinds of finding."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from netsentry.pipeline.core.errors import SchemaError

VERDICT_COLUMNS = ("score", "flag", "threshold", "benign_tail")

TAIL_HIGH = 0.002
"""A window is *far* beyond benign when at most this share of benign validation windows scored as high."""


def score_windows(windows: pd.DataFrame, model: Any, threshold_scale: float, what: str) -> pd.DataFrame:
    """The windows with the model's verdict appended: ``score``, ``flag``, ``threshold``, ``benign_tail``."""
    out = windows.reset_index(drop=True).copy()
    if out.empty:
        for c in VERDICT_COLUMNS:
            out[c] = pd.Series(dtype=np.int64 if c == "flag" else np.float64)
        return out
    try:
        pred = model.predict(out, params={"threshold_scale": float(threshold_scale)})
    except Exception as e:  # mlflow raises its own exception types for schema mismatches
        raise SchemaError(f"{what} do not match the model's input signature: {str(e).splitlines()[0]}") from None
    for c in VERDICT_COLUMNS:
        out[c] = pred[c].to_numpy() if c in pred.columns else np.nan
    out["flag"] = out["flag"].astype(np.int64)
    return out


def severity(windows: int, tail: float, *, sustained: int) -> str:
    """``high``: sustained and far beyond benign, or sustained twice over; ``medium``: one of the two; else ``low``.

    *Sustained*: at least ``sustained`` flagged windows. *Far*: a window beyond all but :data:`TAIL_HIGH` of
    the benign validation windows (``tail``; NaN for models that did not keep their benign quantiles).
    """
    far = bool(np.isfinite(tail) and tail <= TAIL_HIGH)
    if (windows >= sustained and far) or windows >= 2 * sustained:
        return "high"
    if windows >= sustained or far:
        return "medium"
    return "low"


def slog(x: np.ndarray | float) -> np.ndarray:
    """Signed log1p: distances between features of different units become comparable orders of magnitude."""
    a = np.asarray(x, dtype=np.float64)
    return np.sign(a) * np.log1p(np.abs(a))


def fold(value: float, reference: float) -> float | None:
    """``value / reference`` as an x-fold; None when the reference is not positive."""
    if not np.isfinite(reference) or reference <= 0 or not np.isfinite(value):
        return None
    return float(value / reference)


def spreads(windows: pd.DataFrame, names: list[str], floor: float = 0.5) -> pd.Series:
    """Per feature, the interquartile range of its signed log over ``windows`` (at least ``floor``)."""
    if windows.empty:
        return pd.Series(floor, index=names, dtype=np.float64)
    logged = slog(windows[names].to_numpy(np.float64))
    iqr = np.nanpercentile(logged, 75, axis=0) - np.nanpercentile(logged, 25, axis=0)
    return pd.Series(np.maximum(np.nan_to_num(iqr, nan=floor), floor), index=names)


def deviations(
    value: pd.Series,
    baseline: pd.Series | None,
    peers: pd.Series | None,
    catalogue: dict[str, str],
    spread: pd.Series | None = None,
    top: int = 5,
) -> list[dict[str, Any]]:
    """The ``top`` features furthest from the scope's own baseline or from its peers.

    Distance: difference of signed logs, in units of the feature's usual spread (:func:`spreads`), so a
    byte rate that always varies a lot does not outrank a count that is normally steady.
    """
    rows = []
    for name, meaning in catalogue.items():
        v = float(value[name])
        b = float(baseline[name]) if baseline is not None and name in baseline else np.nan
        p = float(peers[name]) if peers is not None and name in peers else np.nan
        unit = float(spread[name]) if spread is not None and name in spread else 1.0
        d_b = abs(float(slog(v) - slog(b))) / unit if np.isfinite(b) else 0.0
        d_p = abs(float(slog(v) - slog(p))) / unit if np.isfinite(p) else 0.0
        if max(d_b, d_p) <= 0.1:
            continue
        rows.append(
            {
                "name": name,
                "meaning": meaning,
                "value": v,
                "baseline": b if np.isfinite(b) else None,
                "peers": p if np.isfinite(p) else None,
                "vs_baseline": fold(v, b),
                "vs_peers": fold(v, p),
                "distance": round(max(d_b, d_p), 3),
            }
        )
    rows.sort(key=lambda r: (-r["distance"], r["name"]))
    return rows[:top]


def timeline(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Every window of one scope as ``{start_ns, end_ns, score, flag}`` (for the report's plots)."""
    start = rows["window_start_ns"].to_numpy(np.int64)
    end = start + (rows["window_s"].to_numpy(np.float64) * 1e9).astype(np.int64)
    score = rows["score"].to_numpy(np.float64)
    flag = rows["flag"].to_numpy(np.int64)
    return [
        {"start_ns": int(s), "end_ns": int(e), "score": round(float(c), 6), "flag": int(f)}
        for s, e, c, f in zip(start, end, score, flag, strict=True)
    ]
