"""Supervised detector: histogram gradient-boosted trees, for when labels exist."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from netsentry.models.base import Detector, Features
from netsentry.models.scaling import as_feature_matrix, feature_names_of, signed_log1p
from netsentry.pipeline.core.errors import ConfigError, NoUsableDataError

# Rows used for the label-free permutation importance (subsampled, seeded).
_IMPORTANCE_ROWS = 2000


class BoostedDetector(Detector):
    """scikit-learn ``HistGradientBoostingClassifier`` (seeded, no early stopping, balanced classes).

    Labels: 1 (or any positive) = attack/fault, 0 = benign, negative/NaN = ambiguous (dropped). Both classes
    must be present. ``calibration="oof"`` (default): the trees learn from every row and the threshold is a
    quantile of out-of-fold scores of the benign rows (``oof_folds`` contiguous blocks of time; smoothed, see
    :func:`~netsentry.models.thresholds.smoothed_threshold_for_fpr`: out-of-fold scores of overlapping windows cluster);
    ``"holdout"``: they learn from all but the last ``calibration_fraction`` of rows, whose benign part sets the
    threshold. ``monotonic``: feature name → +1/-1, the score may only rise/fall with that feature (domain
    knowledge that also holds far outside the training range, e.g. more retransmissions are never healthier).

    Score: the classifier's log-odds of class 1 (``decision_function`` of the trees), not the probability, so
    confident scores do not saturate into ties at 1.0; :meth:`predict_proba` gives probabilities. The trees see
    ``signed_log1p`` of the features (a monotone map, so splits are unaffected, but bounded for ±inf).
    ``feature_importances``: label-free permutation sensitivity, the mean |change in log-odds| when one
    feature is shuffled across rows. ``explain``: |scaled deviation| from the benign training median.

    ``n_threads``: OpenMP threads for the trees while fitting and scoring (``None`` = all cores). It defaults to 1:
    feature tables are small, and OpenMP threads thrash on a busy machine; see docs/experiments.md#boosted-threads.
    """

    kind = "supervised"

    def __init__(
        self,
        max_iter: int = 400,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 31,
        max_depth: int | None = 3,
        min_samples_leaf: int = 20,
        l2_regularization: float = 0.0,
        class_weight: str | dict | None = "balanced",
        n_threads: int | None = 1,
        target_fpr: float = 0.01,
        calibration_fraction: float = 0.25,
        calibration: str = "oof",
        oof_folds: int = 4,
        monotonic: dict[str, int] | None = None,
        random_state: Any = 0,
    ) -> None:
        super().__init__(target_fpr=target_fpr, calibration_fraction=calibration_fraction, random_state=random_state)
        self.calibration = calibration
        self.oof_folds = oof_folds
        self.max_depth = max_depth
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.class_weight = class_weight
        self.n_threads = n_threads
        self.monotonic = monotonic

    def fit(self, X: Features, y: Any = None, calibration_rows: Any = None) -> BoostedDetector:
        """Fit on labelled, time-ordered rows; raises :class:`NoUsableDataError` unless both classes exist.
        ``calibration_rows`` (boolean per row, default all): the benign rows that may set the out-of-fold threshold
        (leave out synthetic rows, as training's context negatives: they are not the benign traffic a threshold is
        for)."""
        if y is None:
            raise NoUsableDataError(f"{type(self).__name__} is supervised: fit needs labels y (1 attack, 0 benign)")
        labels = np.asarray(y, dtype=np.float64).ravel()
        if not ((labels == 0).any() and (labels > 0).any()):
            raise NoUsableDataError(
                f"{type(self).__name__} needs both benign (0) and positive (1) labels; got "
                f"{int((labels == 0).sum())} benign and {int((labels > 0).sum())} positive rows"
            )
        if self.calibration == "holdout":
            return super().fit(X, y)
        if self.calibration != "oof":
            raise ConfigError(f"calibration must be 'oof' or 'holdout', got {self.calibration!r}")
        rows = np.ones(len(labels), bool) if calibration_rows is None else np.asarray(calibration_rows, bool).ravel()
        if rows.shape != labels.shape:
            raise ConfigError(f"calibration_rows has {rows.size} entries for {labels.size} rows")
        return self._fit_oof(X, labels, rows)

    def _fit_oof(self, X: Features, labels: np.ndarray, calibration_rows: np.ndarray) -> BoostedDetector:
        """Fit on every row; the threshold comes from out-of-fold scores of benign rows, folds being contiguous
        blocks of time (a model never scores rows it was trained on, and every benign row is scored once)."""
        names = feature_names_of(X)
        matrix = as_feature_matrix(X, names)
        keep = labels >= 0
        matrix, labels, calibration_rows = matrix[keep], (labels[keep] > 0).astype(np.int64), calibration_rows[keep]
        folds = max(2, int(self.oof_folds))
        blocks = np.array_split(np.arange(len(labels)), folds)
        oof = np.full(len(labels), np.nan)
        for block in blocks:
            rest = np.setdiff1d(np.arange(len(labels)), block)
            if not ((labels[rest] == 0).any() and (labels[rest] == 1).any()):
                continue
            part = clone(self).set_params(calibration="holdout", calibration_fraction=0.0)
            part.fit(pd.DataFrame(matrix[rest], columns=list(names)), labels[rest])
            oof[block] = part.score_samples(pd.DataFrame(matrix[block], columns=list(names)))
        fraction = self.calibration_fraction
        self.set_params(calibration_fraction=0.0)
        try:
            super().fit(pd.DataFrame(matrix, columns=list(names)), labels)
        finally:
            self.set_params(calibration_fraction=fraction)
        benign = (labels == 0) & ~np.isnan(oof) & calibration_rows
        if not benign.any():
            raise NoUsableDataError("no benign row could be scored out of fold to calibrate the threshold")
        method = f"smoothed quantile of out-of-fold scores of benign rows ({folds} contiguous time blocks)"
        self._threshold_from_scores(oof[benign], method, n_train=len(labels), smoothed=True)
        return self

    def predict_proba(self, X: Features) -> np.ndarray:
        """``[P(benign), P(positive)]`` per row."""
        check_is_fitted(self)
        with threadpool_limits(self.n_threads, user_api="openmp"):
            return self.model_.predict_proba(signed_log1p(self._matrix(X)))

    def _monotonic_cst(self) -> list[int] | None:
        """Per-feature constraint (+1: the score never falls as the feature grows, -1: never rises, 0: free)."""
        if not self.monotonic:
            return None
        unknown = sorted(set(self.monotonic) - set(self.feature_names_in_))
        if unknown:
            raise ConfigError(f"monotonic constraints name unknown feature(s): {', '.join(unknown)}")
        return [int(np.sign(self.monotonic.get(name, 0))) for name in self.feature_names_in_]

    def _fit_matrix(self, X: np.ndarray, y: np.ndarray | None, benign: np.ndarray) -> None:
        positive = y > 0
        if not (positive.any() and benign.any()):
            raise NoUsableDataError(
                f"after holding out the last {self.calibration_fraction:.0%} of rows for calibration the training "
                f"part has {int(benign.sum())} benign and {int(positive.sum())} positive rows; both are needed "
                "(lower calibration_fraction or supply more labelled data)"
            )
        self.classes_ = np.array([0, 1])
        model = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            class_weight=self.class_weight,
            monotonic_cst=self._monotonic_cst(),
            early_stopping=False,
            random_state=self.random_state,
        )
        with threadpool_limits(self.n_threads, user_api="openmp"):
            self.model_ = model.fit(signed_log1p(X), positive.astype(int))

    def _score_matrix(self, X: np.ndarray) -> np.ndarray:
        with threadpool_limits(self.n_threads, user_api="openmp"):
            return self.model_.decision_function(signed_log1p(X))

    def _importance_matrix(self, X: np.ndarray) -> np.ndarray:
        rng = check_random_state(self.random_state if isinstance(self.random_state, int | np.integer) else 0)
        if len(X) > _IMPORTANCE_ROWS:
            X = X[np.sort(rng.choice(len(X), _IMPORTANCE_ROWS, replace=False))]
        # all permuted copies scored in one call (one thread-limit switch)
        stacked = np.repeat(X[None], X.shape[1] + 1, axis=0)
        for j in range(X.shape[1]):
            stacked[j + 1, :, j] = rng.permutation(X[:, j])
        scores = self._score_matrix(stacked.reshape(-1, X.shape[1])).reshape(X.shape[1] + 1, len(X))
        return np.abs(scores[1:] - scores[0]).mean(axis=1)
