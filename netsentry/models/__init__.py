"""Detector implementations (scikit-learn API; torch only where needed).

Importing this package is cheap: names are resolved on first access, and the autoencoder (torch) only when it is
asked for. Scores are higher = more anomalous for every detector; ``predict`` flags ``score >= threshold_``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Detector": "netsentry.models.base",
    "RobustLogScaler": "netsentry.models.scaling",
    "threshold_for_fpr": "netsentry.models.thresholds",
    "fpr_tpr_at": "netsentry.models.thresholds",
    "IsolationForestDetector": "netsentry.models.iforest",
    "AutoencoderDetector": "netsentry.models.autoencoder",
    "BoostedDetector": "netsentry.models.boosted",
    "FlowClassifier": "netsentry.models.flow_classifier",
    "DETECTORS": "netsentry.models.registry",
    "make_detector": "netsentry.models.registry",
    "choose_auto": "netsentry.models.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
