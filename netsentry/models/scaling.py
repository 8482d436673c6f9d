"""Feature matrices from feature tables, and a robust scaler for heavy-tailed network counts.

Non-finite inputs are made finite before anything else (:func:`sanitize`): NaN becomes 0 (a missing rate or
ratio reads as "nothing happened") and ±inf becomes ± the largest finite float64 (≈1.8e308), which the signed
log maps to ≈ ±709.8 and the scaler then clips like any other extreme value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from netsentry.pipeline.core.errors import SchemaError

# Spreads at or below this are treated as degenerate (a constant feature).
_TINY = 1e-12


def sanitize(values: np.ndarray) -> np.ndarray:
    """Float64 copy with NaN → 0 and ±inf → ± the largest finite float64."""
    return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=None, neginf=None, copy=True)


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: compresses heavy tails, keeps sign and zero, monotone."""
    return np.sign(values) * np.log1p(np.abs(values))


def feature_names_of(X: pd.DataFrame | np.ndarray) -> np.ndarray:
    """Column labels of a frame, or ``x0 … x{n-1}`` for a matrix (as an object array, like scikit-learn)."""
    if isinstance(X, pd.DataFrame):
        names = list(X.columns)
        if len(set(names)) != len(names):
            dup = sorted({str(c) for c in names if names.count(c) > 1})
            raise SchemaError(f"duplicate feature columns: {', '.join(dup)}")
        return np.asarray(names, dtype=object)
    n = _as_2d(np.asarray(X)).shape[1]
    return np.asarray([f"x{i}" for i in range(n)], dtype=object)


def as_feature_matrix(X: pd.DataFrame | np.ndarray, feature_names: Sequence[object] | None = None) -> np.ndarray:
    """A sanitized float64 matrix of ``X`` with its columns in ``feature_names`` order.

    A DataFrame is matched by column name: order does not matter and extra columns are ignored, but a missing
    column raises :class:`SchemaError` naming it. A plain matrix is taken positionally and must have exactly
    ``len(feature_names)`` columns. Non-numeric feature columns raise :class:`SchemaError`.
    """
    if isinstance(X, pd.DataFrame):
        if feature_names is not None:
            present = set(X.columns)
            missing = [str(c) for c in feature_names if c not in present]
            if missing:
                raise SchemaError(f"missing feature column(s): {', '.join(missing)}")
            X = X.loc[:, list(feature_names)]
        bad = [str(c) for c, dt in X.dtypes.items() if not pd.api.types.is_numeric_dtype(dt)]
        if bad:
            raise SchemaError(f"non-numeric feature column(s): {', '.join(bad)}")
        values = X.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        try:
            values = _as_2d(np.asarray(X, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"feature matrix is not numeric: {exc}") from None
        if feature_names is not None and values.shape[1] != len(feature_names):
            raise SchemaError(f"expected {len(feature_names)} feature columns, got {values.shape[1]}")
    return sanitize(values)


def _as_2d(values: np.ndarray) -> np.ndarray:
    if values.ndim != 2:
        raise SchemaError(f"expected a 2-D feature table, got an array with {values.ndim} dimension(s)")
    return values


class RobustLogScaler(TransformerMixin, BaseEstimator):
    """Signed ``log1p``, then centre on the median and divide by the IQR, then clip to ``±clip``.

    The spread falls back to the standard deviation when the IQR is degenerate, and to 1.0 when both are
    (a constant feature then scales to 0). ``clip=None`` disables clipping. Columns are matched by name; see
    :func:`as_feature_matrix` for the input rules and :func:`sanitize` for NaN/inf.
    """

    def __init__(self, clip: float | None = 10.0) -> None:
        self.clip = clip

    def fit(self, X: pd.DataFrame | np.ndarray, y: object = None) -> RobustLogScaler:
        """Learn per-feature median and spread of the signed-log values."""
        names = feature_names_of(X)
        logged = signed_log1p(as_feature_matrix(X, names))
        if logged.shape[0] == 0:
            raise SchemaError("cannot fit a scaler on an empty table")
        q25, median, q75 = np.percentile(logged, [25, 50, 75], axis=0)
        scale = q75 - q25
        std = logged.std(axis=0)
        scale = np.where(scale > _TINY, scale, np.where(std > _TINY, std, 1.0))
        self.feature_names_in_ = names
        self.n_features_in_ = len(names)
        self.center_ = median
        self.scale_ = scale
        return self

    def transform(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Scaled float64 matrix in ``feature_names_in_`` order."""
        check_is_fitted(self)
        scaled = (signed_log1p(as_feature_matrix(X, self.feature_names_in_)) - self.center_) / self.scale_
        if self.clip is not None:
            np.clip(scaled, -self.clip, self.clip, out=scaled)
        return scaled

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        """Output names equal input names (one-to-one transform)."""
        check_is_fitted(self)
        return np.asarray(self.feature_names_in_, dtype=object)


class TailSurprise(TransformerMixin, BaseEstimator):
    """Per-feature upper-tail surprise against reference (benign) rows, in nats.

    ``-log((1 + k) / (n + 1))`` with ``k`` the reference values at or above ``x`` among ``n``: 0 for a value
    most reference rows reach, ``log(n + 1)`` beyond the reference maximum. Past the maximum the tail is taken to fall
    like a Pareto tail of index ``alpha``, adding ``alpha * (signed_log1p(x) - signed_log1p(max))``, so magnitude
    still ranks values the reference never reached. Every feature thus speaks in the same unit (how rare upward),
    whatever its scale or how sparse it is: a count that is zero in 95 % of benign windows and a ratio near 1
    are treated alike, and a value below the benign median is not surprising at all (compromise and fault features
    rise with the behaviour). At most ``max_reference`` evenly spaced order statistics per feature are kept.
    """

    def __init__(self, alpha: float = 1.0, max_reference: int = 2048) -> None:
        self.alpha = alpha
        self.max_reference = max_reference

    def fit(self, X: pd.DataFrame | np.ndarray, y: object = None) -> TailSurprise:
        """Keep the sorted reference values (or evenly spaced order statistics of them) per feature."""
        names = feature_names_of(X)
        values = np.sort(as_feature_matrix(X, names), axis=0)
        n = values.shape[0]
        if n == 0:
            raise SchemaError("cannot fit a tail transform on an empty table")
        m = min(n, max(2, int(self.max_reference)))
        self.feature_names_in_ = names
        self.n_features_in_ = len(names)
        self.n_reference_ = n
        self.reference_ = values[np.round(np.linspace(0, n - 1, m)).astype(np.int64)]
        self.log_max_ = signed_log1p(values[-1])
        return self

    def transform(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Surprise matrix (float64, ≥ 0) in ``feature_names_in_`` order."""
        check_is_fitted(self)
        values = as_feature_matrix(X, self.feature_names_in_)
        m = self.reference_.shape[0]
        at_or_above = np.empty(values.shape)
        for j in range(values.shape[1]):  # one binary search per feature over all rows
            at_or_above[:, j] = m - np.searchsorted(self.reference_[:, j], values[:, j], side="left")
        k = at_or_above * (self.n_reference_ / m)
        beyond = np.maximum(signed_log1p(values) - self.log_max_, 0.0)
        return np.log((self.n_reference_ + 1) / (1 + k)) + self.alpha * beyond

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        """Output names equal input names (one-to-one transform)."""
        check_is_fitted(self)
        return np.asarray(self.feature_names_in_, dtype=object)
