"""Alert thresholds calibrated to a target false-positive rate on benign scores."""

from __future__ import annotations

import math
import numbers

import numpy as np

from netsentry.pipeline.core.errors import ConfigError, NoUsableDataError

# Slack when turning ``target_fpr * n`` into a count, so 0.29 * 100 counts as 29, not 28.
_COUNT_EPS = 1e-9


def threshold_for_fpr(benign_scores: np.ndarray, target_fpr: float) -> float:
    """Smallest threshold ``t`` with ``mean(benign_scores >= t) <= target_fpr`` (higher score = more anomalous).

    At most ``k = floor(target_fpr * n)`` benign scores may reach the threshold, so it must lie strictly above
    the (k+1)-th highest score ``s``; the smallest such float is ``nextafter(s, +inf)``, which is returned.
    Ties: the whole tie block at ``s`` falls below the threshold, so with ties the achieved FPR can be lower
    than the target (never higher); scores tied with ``s`` on new data are not flagged. ``target_fpr = 0``
    puts the threshold just above the highest benign score.

    Raises :class:`NoUsableDataError` for no scores, :class:`ConfigError` for ``target_fpr`` outside [0, 1),
    and :class:`ValueError` for NaN scores.
    """
    if not (isinstance(target_fpr, numbers.Real) and not isinstance(target_fpr, bool) and 0.0 <= target_fpr < 1.0):
        raise ConfigError(f"target_fpr must be a number in [0, 1), got {target_fpr!r}")
    scores = np.asarray(benign_scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise NoUsableDataError("no benign scores to calibrate a threshold on")
    if np.isnan(scores).any():
        raise ValueError("benign scores contain NaN")
    allowed = math.floor(float(target_fpr) * scores.size + _COUNT_EPS)
    # (allowed + 1)-th highest score = index n - allowed - 1 in ascending order.
    boundary = np.partition(scores, scores.size - allowed - 1)[scores.size - allowed - 1]
    return float(np.nextafter(boundary, np.inf))


def smoothed_threshold_for_fpr(benign_scores: np.ndarray, target_fpr: float) -> float:
    """:func:`threshold_for_fpr`, raised to the Harrell-Davis estimate of the ``1 - target_fpr`` quantile where
    that is higher.

    Scores of sliding windows come in clusters (one VM's episode is several overlapping windows that score alike).
    When the empirical quantile falls at the bottom of a wide gap between two clusters, whether 14 or 16 rows lie
    above the gap decides the threshold, and with it which real traffic is flagged. The Harrell-Davis estimator
    weighs the order statistics around the quantile (a Beta kernel of width ~ sqrt(n p (1 - p)) ranks) and lands
    inside such a gap. Never below the empirical threshold, so the achieved FPR on these scores stays at or under
    the target. Same errors as :func:`threshold_for_fpr`.
    """
    empirical = threshold_for_fpr(benign_scores, target_fpr)
    scores = np.asarray(benign_scores, dtype=np.float64).ravel()
    if scores.size < 2 or target_fpr == 0.0:
        return empirical
    from scipy.stats.mstats import hdquantiles

    return max(empirical, float(np.asarray(hdquantiles(scores, prob=[1.0 - float(target_fpr)]))[0]))


def fpr_tpr_at(scores: np.ndarray, y: np.ndarray, threshold: float) -> tuple[float, float]:
    """``(FPR, TPR)`` of flagging ``scores >= threshold`` against labels ``y`` (1 attack/fault, 0 benign).

    Rows with a negative label (ambiguous) are ignored. A rate whose class is absent is NaN.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(y, dtype=np.float64).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and y differ in length: {scores.size} vs {labels.size}")
    flagged = scores >= threshold
    benign, positive = labels == 0, labels > 0
    fpr = float(flagged[benign].mean()) if benign.any() else math.nan
    tpr = float(flagged[positive].mean()) if positive.any() else math.nan
    return fpr, tpr
