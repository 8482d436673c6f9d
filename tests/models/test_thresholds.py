"""Known answers for threshold calibration at a target false-positive rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from netsentry.models.thresholds import fpr_tpr_at, smoothed_threshold_for_fpr, threshold_for_fpr
from netsentry.pipeline.core.errors import ConfigError, NoUsableDataError


def test_hundred_scores_five_percent_flags_exactly_five() -> None:
    scores = np.arange(100, dtype=float)
    t = threshold_for_fpr(scores, 0.05)
    assert (scores >= t).sum() == 5
    assert 94 < t <= 95
    assert t == np.nextafter(94.0, np.inf)  # the smallest float that keeps 94 below the threshold


def test_order_does_not_matter_and_threshold_is_minimal() -> None:
    rng = np.random.default_rng(3)
    scores = rng.normal(size=1000)
    for fpr in (0.0, 0.001, 0.01, 0.05, 0.29, 0.5, 0.999):
        t = threshold_for_fpr(scores, fpr)
        assert threshold_for_fpr(rng.permutation(scores), fpr) == t
        assert np.mean(scores >= t) <= fpr
        # minimal: the highest score below t, used as threshold, would flag too many
        below = scores[scores < t]
        if below.size:
            assert np.mean(scores >= below.max()) > fpr


@pytest.mark.parametrize(("fpr", "flagged"), [(0.29, 29), (0.07, 7), (0.0, 0), (0.999, 99), (0.009, 0)])
def test_rounding_of_allowed_count(fpr: float, flagged: int) -> None:
    scores = np.arange(100, dtype=float)
    assert (scores >= threshold_for_fpr(scores, fpr)).sum() == flagged


def test_ties_are_kept_together_below_the_threshold() -> None:
    scores = np.array([0.0] * 90 + [1.0] * 10)
    # 5 may be flagged, but the 6th highest is tied with 9 others: the whole block stays below
    t = threshold_for_fpr(scores, 0.05)
    assert t > 1.0
    assert (scores >= t).sum() == 0
    # 10 may be flagged: exactly the tie block at 1.0
    t = threshold_for_fpr(scores, 0.10)
    assert 0.0 < t <= 1.0
    assert (scores >= t).sum() == 10


def test_single_score_and_all_equal() -> None:
    assert threshold_for_fpr([3.0], 0.5) == np.nextafter(3.0, np.inf)
    assert threshold_for_fpr(np.ones(50), 0.2) > 1.0


def test_empty_scores_raise() -> None:
    with pytest.raises(NoUsableDataError, match="no benign scores"):
        threshold_for_fpr(np.array([]), 0.01)


@pytest.mark.parametrize("fpr", [-0.1, 1.0, 1.5, math.nan, "0.1", None, True])
def test_bad_target_fpr_raises(fpr: object) -> None:
    with pytest.raises(ConfigError, match="target_fpr"):
        threshold_for_fpr(np.arange(10.0), fpr)  # type: ignore[arg-type]


def test_nan_scores_raise() -> None:
    with pytest.raises(ValueError, match="NaN"):
        threshold_for_fpr(np.array([0.0, np.nan, 1.0]), 0.1)


def test_fpr_tpr_at_known_answer() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.4, 0.8, 0.95, 0.5])
    y = np.array([0, 0, 0, 0, 1, 1, 1, -1])  # last row ambiguous: ignored
    fpr, tpr = fpr_tpr_at(scores, y, 0.8)
    assert fpr == pytest.approx(1 / 4)
    assert tpr == pytest.approx(2 / 3)
    fpr, tpr = fpr_tpr_at(scores[:4], y[:4], 0.5)
    assert fpr == 0.25
    assert math.isnan(tpr)
    with pytest.raises(ValueError, match="length"):
        fpr_tpr_at(scores, y[:3], 0.5)


def test_smoothed_threshold_lands_inside_a_gap_between_clusters() -> None:
    """14 scores of one episode at 2.5-4, the rest below 0: the empirical 1 % threshold of 1,516 sits just above
    the 16th highest (the gap's floor); the smoothed one inside the gap, and neither lets more than 15 through."""
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(2.5, 4.0, 14), rng.uniform(-3.0, -0.3, 1502)])
    empirical = threshold_for_fpr(scores, 0.01)
    smoothed = smoothed_threshold_for_fpr(scores, 0.01)
    assert empirical < -0.2 and -0.3 < smoothed < 2.5
    assert np.sum(scores >= smoothed) == 14 <= np.sum(scores >= empirical) <= 15
    dense = rng.normal(size=20_000)  # no gap: both agree to within a sliver of the spread
    assert smoothed_threshold_for_fpr(dense, 0.01) == pytest.approx(threshold_for_fpr(dense, 0.01), abs=0.05)
    assert smoothed_threshold_for_fpr(dense, 0.01) >= threshold_for_fpr(dense, 0.01)
    assert smoothed_threshold_for_fpr(np.array([1.0]), 0.01) == threshold_for_fpr(np.array([1.0]), 0.01)
