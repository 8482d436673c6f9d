"""``threshold_scale`` acts on the benign false-positive rate, whatever the detector's score units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from netsentry.models.boosted import BoostedDetector
from netsentry.models.iforest import IsolationForestDetector
from netsentry.pipeline.core.tracking import scaled_threshold


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(4000, 4)), columns=list("abcd"))
    y = (rng.random(4000) < 0.05).astype(int)
    X.loc[y == 1, "a"] += 3.0
    return X, y


@pytest.mark.parametrize("supervised", [False, True], ids=["iforest", "boosted"])
def test_scale_moves_the_threshold_along_the_benign_scores(supervised: bool, data) -> None:
    X, y = data
    det = BoostedDetector(max_iter=50).fit(X, y) if supervised else IsolationForestDetector(random_state=0).fit(X)
    base = float(det.threshold_)
    benign = det.score_samples(X[y == 0])
    assert scaled_threshold(det, 1.0) == base
    strict, loose = scaled_threshold(det, 4.0), scaled_threshold(det, 0.25)
    assert loose <= base <= strict
    fpr = lambda t: float(np.mean(benign >= t))  # noqa: E731
    assert fpr(strict) <= fpr(base) <= fpr(loose)
    assert fpr(strict) < 0.01 < fpr(loose)
    assert scaled_threshold(det, 1e6) <= det.benign_quantiles_[-1]  # never beyond every benign window


def test_without_quantiles_the_threshold_is_multiplied_and_raised(data) -> None:
    X, _ = data
    det = IsolationForestDetector(random_state=0).fit(X)
    del det.benign_quantiles_
    det.threshold_ = -2.0
    assert scaled_threshold(det, 2.0) == -1.0
    det.threshold_ = 2.0
    assert scaled_threshold(det, 2.0) == 4.0
