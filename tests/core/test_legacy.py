"""Models registered under the first layout's module names (``models.*``, ``pipeline.*``) still load."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from netsentry import models
from netsentry.models import iforest
from netsentry.pipeline.core.legacy import current_name, legacy_module_names


def test_old_names_map_to_todays_modules() -> None:
    assert current_name("models.boosted") == "netsentry.models.boosted"
    assert current_name("pipeline.tracking") == "netsentry.pipeline.core.tracking"
    assert current_name("pipeline.inspection.faults") == "netsentry.pipeline.inspect.faults"
    assert current_name("pipeline.flows") == "netsentry.pipeline.flows.assemble"
    assert current_name("pipeline.flow_kernel") == "netsentry.pipeline.flows.kernel"
    assert current_name("pipeline.capture.decode") == "netsentry.pipeline.capture.decode"
    assert current_name("pandas") is None and current_name("modelsx") is None


def _old_layout_pickle(detector: object) -> bytes:
    """The detector pickled as the first layout named it: class ``IsolationForestDetector`` of ``models.iforest``."""
    cls = type(detector)
    sys.modules["models"], sys.modules["models.iforest"] = models, iforest
    cls.__module__ = "models.iforest"
    try:
        return pickle.dumps(detector)
    finally:
        cls.__module__ = "netsentry.models.iforest"
        del sys.modules["models"], sys.modules["models.iforest"]


def test_detector_pickled_under_the_old_layout_loads_and_scores_the_same() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    det = iforest.IsolationForestDetector(random_state=0).fit(X)
    blob = _old_layout_pickle(det)
    assert b"\x0emodels.iforest" in blob and b"netsentry.models.iforest" not in blob
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(blob)
    with legacy_module_names():
        loaded = pickle.loads(blob)
    assert type(loaded) is iforest.IsolationForestDetector
    np.testing.assert_array_equal(loaded.score_samples(X), det.score_samples(X))
    assert "models.iforest" not in sys.modules and "models" not in sys.modules  # the old names are gone again
    assert iforest.__spec__.name == "netsentry.models.iforest" and models.__spec__.name == "netsentry.models"
