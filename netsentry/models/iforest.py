"""Isolation Forest on per-feature benign tail surprise."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest

from netsentry.models.base import Detector
from netsentry.models.scaling import TailSurprise


class IsolationForestDetector(Detector):
    """scikit-learn ``IsolationForest`` on :class:`~netsentry.models.scaling.TailSurprise` of the benign training rows.

    Every input is "how rare upward" in nats, so sparse counts and bounded ratios weigh alike and a quiet window is
    not isolated for being quiet; see docs/experiments.md#tail-surprise-inputs.
    Score: ``-IsolationForest.score_samples`` (the mean-path-length anomaly score, in (0, 1]; higher = more
    anomalous). ``explain``/``feature_importances``: |scaled deviation| from the benign training median.
    """

    kind = "unsupervised"

    def __init__(
        self,
        n_estimators: int = 200,
        max_samples: int | float | str = "auto",
        max_features: float = 1.0,
        n_jobs: int | None = None,
        target_fpr: float = 0.01,
        calibration_fraction: float = 0.25,
        random_state: Any = 0,
    ) -> None:
        super().__init__(target_fpr=target_fpr, calibration_fraction=calibration_fraction, random_state=random_state)
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.n_jobs = n_jobs

    def _fit_matrix(self, X: np.ndarray, y: np.ndarray | None, benign: np.ndarray) -> None:
        self.surprise_ = TailSurprise().fit(X[benign])
        self.model_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            max_features=self.max_features,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        ).fit(self.surprise_.transform(X[benign]))

    def _score_matrix(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(self.inputs(X))
