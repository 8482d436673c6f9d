"""Multi-class flow classifier: histogram gradient-boosted trees over per-flow features (e.g. CICFlowMeter)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from netsentry.pipeline.core.errors import NoUsableDataError, SchemaError

# Rows used to find the bin edges (seeded subsample above this), as HistGradientBoosting does itself.
_BINNING_ROWS = 200_000


class FlowClassifier(ClassifierMixin, BaseEstimator):
    """Seeded, deterministic multi-class ``HistGradientBoostingClassifier`` with balanced class weights.

    ``fit(X, y)`` takes a numeric feature table (DataFrame or 2-D array; NaN allowed, ±inf treated as beyond
    every finite value) and class labels of any hashable type; ``classes_`` is sorted. No early stopping, so
    the result depends only on the data, the parameters and ``random_state``.

    Features are quantile-binned here (at most ``max_bins`` bins, unweighted quantiles of at most 200,000
    seeded rows) before boosting, the binning ``HistGradientBoostingClassifier`` does itself; done here
    because scikit-learn's weighted-percentile binning, used whenever class weights are set, costs seconds
    on 10,000 rows and minutes on millions. ``n_threads`` caps the OpenMP threads (None: library default).
    A DataFrame given to ``predict`` is matched to the training columns by name.
    """

    def __init__(
        self,
        max_iter: int = 100,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 31,
        min_samples_leaf: int = 20,
        l2_regularization: float = 0.0,
        max_bins: int = 255,
        class_weight: str | dict | None = "balanced",
        random_state: int = 0,
        n_threads: int | None = None,
    ) -> None:
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.max_bins = max_bins
        self.class_weight = class_weight
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, X: pd.DataFrame | np.ndarray, y: Any) -> FlowClassifier:
        """Bin the features, fit the trees; returns ``self``."""
        matrix = self._as_matrix(X, names=None)
        labels = np.asarray(y.to_numpy() if isinstance(y, pd.Series) else y)  # not .values: may be an Arrow array
        if labels.ndim != 1 or labels.shape[0] != matrix.shape[0]:
            raise ValueError(f"X has {matrix.shape[0]} rows but y has shape {labels.shape}")
        if len(pd.unique(labels)) < 2:
            raise NoUsableDataError(f"{type(self).__name__} needs at least two classes; got {sorted(set(labels))}")
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.n_features_in_ = matrix.shape[1]
        self.bin_edges_ = self._bin_edges(matrix)
        model = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            max_bins=self.max_bins,
            class_weight=self.class_weight,
            early_stopping=False,
            random_state=self.random_state,
        )
        with self._threads():
            self.model_ = model.fit(self._binned(matrix), labels)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Most probable class per row (values from ``classes_``)."""
        check_is_fitted(self)
        with self._threads():
            return self.model_.predict(self._binned(self._matrix(X)))

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Class probabilities per row, columns in ``classes_`` order."""
        check_is_fitted(self)
        with self._threads():
            return self.model_.predict_proba(self._binned(self._matrix(X)))

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    # ------------------------------------------------------------------ helpers
    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        if self.n_threads is None:
            yield
            return
        with threadpool_limits(limits=int(self.n_threads), user_api="openmp"):
            yield

    def _matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        names = getattr(self, "feature_names_in_", None)
        matrix = self._as_matrix(X, names=names if isinstance(X, pd.DataFrame) else None)
        if matrix.shape[1] != self.n_features_in_:
            raise SchemaError(f"expected {self.n_features_in_} feature columns, got {matrix.shape[1]}")
        return matrix

    @staticmethod
    def _as_matrix(X: pd.DataFrame | np.ndarray, names: np.ndarray | None) -> np.ndarray:
        if isinstance(X, pd.DataFrame) and names is not None:
            missing = [n for n in names if n not in X.columns]
            if missing:
                more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
                raise SchemaError(
                    f"feature table lacks column(s) {', '.join(missing[:5])}{more} the model was fitted on"
                )
            X = X[list(names)]
        if isinstance(X, pd.DataFrame):
            matrix = X.to_numpy(dtype=np.float64, na_value=np.nan)  # nullable dtypes: pd.NA → NaN
        else:
            matrix = np.asarray(X, dtype=np.float64)
        if matrix.ndim != 2:
            raise ValueError(f"expected a 2-D feature table, got shape {matrix.shape}")
        return matrix

    def _bin_edges(self, matrix: np.ndarray) -> list[np.ndarray]:
        """Per feature, increasing edges: x goes to bin i iff edges[i-1] < x <= edges[i] (NaN stays NaN)."""
        if not 2 <= self.max_bins <= 255:
            raise ValueError(f"max_bins must be in [2, 255], got {self.max_bins}")
        if matrix.shape[0] > _BINNING_ROWS:
            rng = np.random.default_rng(self.random_state)
            matrix = matrix[np.sort(rng.choice(matrix.shape[0], _BINNING_ROWS, replace=False))]
        percentiles = np.linspace(0, 100, num=self.max_bins + 1)[1:-1]
        edges = []
        for column in matrix.T:
            values = column[~np.isnan(column)]
            distinct = np.unique(values)
            if len(distinct) <= self.max_bins:
                edges.append((distinct[:-1] + distinct[1:]) / 2)
            else:
                edges.append(np.unique(np.percentile(values, percentiles, method="averaged_inverted_cdf")))
        return edges

    def _binned(self, matrix: np.ndarray) -> np.ndarray:
        out = np.empty_like(matrix)
        for j, edges in enumerate(self.bin_edges_):
            column = matrix[:, j]
            out[:, j] = np.searchsorted(edges, column, side="left")
            out[np.isnan(column), j] = np.nan
        return out
