"""Detector implementations (scikit-learn API; torch only where needed).

Importing this package is cheap: names are resolved on first access, and the autoencoder (torch) only when it is
asked for. Scores are higher = more anomalous for every detector; ``predict`` flags ``score >= threshold_``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Detector": "models.base",
    "RobustLogScaler": "models.scaling",
    "threshold_for_fpr": "models.thresholds",
    "fpr_tpr_at": "models.thresholds",
    "IsolationForestDetector": "models.iforest",
    "AutoencoderDetector": "models.autoencoder",
    "BoostedDetector": "models.boosted",
    "FlowClassifier": "models.flow_classifier",
    "DETECTORS": "models.registry",
    "make_detector": "models.registry",
    "choose_auto": "models.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
