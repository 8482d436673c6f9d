"""Registry lookups and the promise that importing models (or anything but the autoencoder) leaves torch alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

from netsentry import models
from netsentry.models.autoencoder import AutoencoderDetector
from netsentry.models.boosted import BoostedDetector
from netsentry.models.iforest import IsolationForestDetector
from netsentry.models.registry import DETECTORS, choose_auto, make_detector
from netsentry.pipeline.core.errors import ConfigError
from tests.paths import REPO


def test_registry_maps_names_to_classes() -> None:
    assert list(DETECTORS) == ["iforest", "autoencoder", "boosted"] and len(DETECTORS) == 3
    assert DETECTORS["iforest"] is IsolationForestDetector
    assert DETECTORS["autoencoder"] is AutoencoderDetector
    assert DETECTORS["boosted"] is BoostedDetector
    assert "nope" not in DETECTORS
    assert {DETECTORS[n].kind for n in DETECTORS} == {"unsupervised", "supervised"}


def test_make_detector_passes_params() -> None:
    detector = make_detector("iforest", n_estimators=10, target_fpr=0.05)
    assert isinstance(detector, IsolationForestDetector)
    assert (detector.n_estimators, detector.target_fpr) == (10, 0.05)


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown detector 'lstm'; valid: iforest, autoencoder, boosted"):
        make_detector("lstm")


def test_unknown_param_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown parameter\\(s\\) for detector 'boosted': epochs"):
        make_detector("boosted", epochs=3)


def test_choose_auto() -> None:
    assert choose_auto(True) == "boosted"
    assert choose_auto(False) == "autoencoder"


def test_package_exports_resolve_lazily() -> None:
    assert models.IsolationForestDetector is IsolationForestDetector
    assert models.make_detector is make_detector
    assert "AutoencoderDetector" in dir(models)
    with pytest.raises(AttributeError):
        _ = models.NotAThing


def test_importing_models_does_not_import_torch() -> None:
    code = (
        "import sys, netsentry.models, netsentry.models.iforest, netsentry.models.boosted, netsentry.models.registry;"
        "import netsentry.models.base, netsentry.models.scaling;"
        "from netsentry.models import DETECTORS, IsolationForestDetector, make_detector;"
        "DETECTORS['iforest']; make_detector('boosted');"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
