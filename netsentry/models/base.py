"""The common detector contract: fit with time-ordered benign calibration, scores where higher = more anomalous."""

from __future__ import annotations

import logging
import numbers
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from netsentry.models.scaling import RobustLogScaler, as_feature_matrix, feature_names_of
from netsentry.models.thresholds import smoothed_threshold_for_fpr, threshold_for_fpr
from netsentry.pipeline.core.errors import ConfigError, NoUsableDataError

log = logging.getLogger(__name__)

Features = pd.DataFrame | np.ndarray
_QUANTILES = 1001


class Detector(BaseEstimator):
    """Base class for anomaly/attack detectors (scikit-learn estimator API).

    Score polarity is pyod's: higher = more anomalous, for every detector; ``predict`` flags
    ``score >= threshold_`` (a score equal to the threshold is flagged).

    ``fit(X, y=None)`` takes rows in time order. Rows with a negative label (ambiguous) are dropped; an
    unsupervised detector then keeps only benign rows (``y == 0``). The last ``calibration_fraction`` of the
    remaining rows is held out (no shuffling), the model is fitted on the rest, and ``threshold_`` is set so that
    at most ``target_fpr`` of the held-out benign scores reach it
    (:func:`netsentry.models.thresholds.threshold_for_fpr`).
    With ``calibration_fraction=0`` the threshold comes from the (in-sample) training scores instead.

    Every detector keeps a :class:`RobustLogScaler` (``scaler_``) fitted on its benign training rows, so a
    scaled value is a deviation from the benign training median in benign-IQR units of ``log1p``.

    Subclasses implement ``_fit_matrix(X, y, benign)`` and ``_score_matrix(X)`` on sanitized float64 matrices in
    ``feature_names_in_`` order, and may override ``_explain_matrix`` and ``_importance_matrix``.
    """

    kind: ClassVar[str] = "unsupervised"

    def __init__(self, target_fpr: float = 0.01, calibration_fraction: float = 0.25, random_state: Any = 0) -> None:
        self.target_fpr = target_fpr
        self.calibration_fraction = calibration_fraction
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Features, y: Any = None) -> Detector:
        """Fit on time-ordered rows, hold out the tail for threshold calibration; returns ``self``."""
        self._check_common_params()
        names = feature_names_of(X)
        matrix = as_feature_matrix(X, names)
        labels = self._labels(y, matrix.shape[0])
        if labels is not None:
            keep = labels >= 0
            if self.kind == "unsupervised":
                keep &= labels == 0
            matrix, labels = matrix[keep], labels[keep]
        n_rows = matrix.shape[0]
        n_cal = self._n_calibration(n_rows)
        if n_rows - n_cal < 2:
            raise NoUsableDataError(
                f"{type(self).__name__} needs at least 2 usable training rows after holding out {n_cal} "
                f"for calibration; got {n_rows} usable rows"
            )
        fit_x, cal_x = matrix[: n_rows - n_cal], matrix[n_rows - n_cal :]
        fit_y = None if labels is None else labels[: n_rows - n_cal]
        cal_y = None if labels is None else labels[n_rows - n_cal :]
        fit_benign = np.ones(len(fit_x), bool) if fit_y is None else fit_y == 0

        self.feature_names_in_ = names
        self.n_features_in_ = len(names)
        self.scaler_ = RobustLogScaler().fit(pd.DataFrame(fit_x[fit_benign], columns=list(names)))
        self._fit_matrix(fit_x, fit_y, fit_benign)

        if n_cal:
            benign_cal = cal_x if cal_y is None else cal_x[cal_y == 0]
            method = "quantile of benign validation scores (last calibration_fraction of rows in time order)"
        else:
            benign_cal = fit_x[fit_benign]
            method = "quantile of benign training scores (in-sample; calibration_fraction=0)"
        if len(benign_cal) == 0:
            raise NoUsableDataError(
                f"the held-out last {self.calibration_fraction:.0%} of rows has no benign rows to calibrate "
                "the threshold on; change calibration_fraction or supply more benign data"
            )
        self._set_threshold(benign_cal, method, n_train=len(fit_x))
        self.feature_importances_ = self._normalised(self._importance_matrix(cal_x if n_cal else fit_x))
        log.debug("%s fitted: %s", type(self).__name__, self.calibration_)
        return self

    def calibrate(self, X_benign: Features) -> Detector:
        """Re-set ``threshold_`` from benign rows at ``target_fpr`` (e.g. fresh traffic); returns ``self``."""
        check_is_fitted(self)
        n_train = self.calibration_.get("n_train")
        self._set_threshold(self._matrix(X_benign), "quantile of benign scores given to calibrate()", n_train)
        return self

    # ------------------------------------------------------------------ scoring
    def score_samples(self, X: Features) -> np.ndarray:
        """Anomaly score per row as float64; higher = more anomalous."""
        check_is_fitted(self)
        return self._scores(self._matrix(X))

    def decision_function(self, X: Features) -> np.ndarray:
        """``score_samples(X) - threshold_``: non-negative means flagged."""
        return self.score_samples(X) - self.threshold_

    def predict(self, X: Features) -> np.ndarray:
        """1 where ``score_samples(X) >= threshold_``, else 0."""
        return (self.score_samples(X) >= self.threshold_).astype(int)

    def explain(self, X: Features) -> pd.DataFrame:
        """Per-row, per-feature contribution to the anomaly (see the subclass; same index as ``X``)."""
        check_is_fitted(self)
        contrib = self._explain_matrix(self._matrix(X))
        index = X.index if isinstance(X, pd.DataFrame) else None
        return pd.DataFrame(contrib, index=index, columns=list(self.feature_names_in_))

    def feature_importances(self, X: Features | None = None) -> pd.Series:
        """Normalised importance per feature (sums to 1), highest first.

        Without ``X``: ``feature_importances_``, computed at fit time on the held-out calibration rows. With ``X``:
        the same measure on those rows (e.g. the flagged ones, to see what drives them).
        """
        check_is_fitted(self)
        values = self.feature_importances_ if X is None else self._normalised(self._importance_matrix(self._matrix(X)))
        series = pd.Series(values, index=list(self.feature_names_in_), name="importance", dtype=np.float64)
        return series.sort_values(ascending=False, kind="stable")

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "threshold_")

    # ------------------------------------------------------------------ subclass hooks
    def _fit_matrix(self, X: np.ndarray, y: np.ndarray | None, benign: np.ndarray) -> None:
        raise NotImplementedError

    def _score_matrix(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _explain_matrix(self, X: np.ndarray) -> np.ndarray:
        """|scaled value|: deviation from the benign training median, in scaled (IQR-of-log) units."""
        return np.abs(self.scaler_.transform(X))

    def _importance_matrix(self, X: np.ndarray) -> np.ndarray:
        """Mean per-feature contribution over the rows."""
        return self._explain_matrix(X).mean(axis=0)

    # ------------------------------------------------------------------ helpers
    def _scores(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self._score_matrix(X), dtype=np.float64).ravel()

    def _matrix(self, X: Features) -> np.ndarray:
        return as_feature_matrix(X, self.feature_names_in_)

    def inputs(self, X: np.ndarray) -> np.ndarray:
        """What the model sees of sanitized rows: their :class:`~netsentry.models.scaling.TailSurprise` when the
        detector keeps one (``surprise_``), else their robust-log scaling (``scaler_``)."""
        surprise = getattr(self, "surprise_", None)
        return self.scaler_.transform(X) if surprise is None else surprise.transform(X)

    def _set_threshold(self, benign: np.ndarray, method: str, n_train: int | None) -> None:
        self._threshold_from_scores(self._scores(benign), method, n_train)

    def _threshold_from_scores(
        self, scores: np.ndarray, method: str, n_train: int | None, smoothed: bool = False
    ) -> None:
        """``threshold_`` at ``target_fpr`` of these benign scores, their quantiles and the ``calibration_`` record;
        ``smoothed``: :func:`~netsentry.models.thresholds.smoothed_threshold_for_fpr` (clustered scores)."""
        choose = smoothed_threshold_for_fpr if smoothed else threshold_for_fpr
        self.threshold_ = choose(scores, self.target_fpr)
        self.benign_quantiles_ = np.quantile(np.asarray(scores, np.float64), np.linspace(0.0, 1.0, _QUANTILES))
        self.calibration_ = {
            "method": method,
            "target_fpr": float(self.target_fpr),
            "achieved_fpr": float(np.mean(scores >= self.threshold_)),
            "n_benign_calibration": len(scores),
            "n_train": n_train,
            "threshold": self.threshold_,
        }

    def benign_tail(self, scores: np.ndarray) -> np.ndarray:
        """Share of benign calibration windows scoring at least as high as each score (empirical p-value).

        Model-agnostic severity: 0.001 means "beyond 99.9 % of benign validation windows". NaN for detectors
        fitted before the quantiles were kept.
        """
        q = getattr(self, "benign_quantiles_", None)
        s = np.asarray(scores, np.float64)
        if q is None:
            return np.full(s.shape, np.nan)
        return 1.0 - np.searchsorted(q, s, side="left") / len(q)

    def _check_common_params(self) -> None:
        for name in ("target_fpr", "calibration_fraction"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= value < 1.0):
                raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")

    def _n_calibration(self, n_rows: int) -> int:
        if self.calibration_fraction == 0:
            return 0
        return max(1, round(self.calibration_fraction * n_rows))

    @staticmethod
    def _labels(y: Any, n_rows: int) -> np.ndarray | None:
        if y is None:
            return None
        labels = np.asarray(y, dtype=np.float64).ravel()
        if labels.shape[0] != n_rows:
            raise ValueError(f"X has {n_rows} rows but y has {labels.shape[0]}")
        return np.where(np.isnan(labels), -1.0, labels)  # unknown label = ambiguous

    @staticmethod
    def _normalised(values: np.ndarray) -> np.ndarray:
        values = np.nan_to_num(np.abs(np.asarray(values, dtype=np.float64)))
        total = values.sum()
        return values / total if total > 0 else np.full(values.shape, 1.0 / max(len(values), 1))
