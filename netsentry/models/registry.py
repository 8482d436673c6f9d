"""Detector names → classes (imported on first use, so torch loads only for the autoencoder)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from netsentry.models.base import Detector
from netsentry.pipeline.core.errors import ConfigError

_PATHS = {
    "iforest": "netsentry.models.iforest:IsolationForestDetector",
    "autoencoder": "netsentry.models.autoencoder:AutoencoderDetector",
    "boosted": "netsentry.models.boosted:BoostedDetector",
}


class _LazyDetectors(Mapping[str, type[Detector]]):
    """Read-only mapping that imports a detector's module when its class is looked up."""

    def __init__(self, paths: Mapping[str, str]) -> None:
        self._paths = dict(paths)

    def __getitem__(self, name: str) -> type[Detector]:
        module, _, attr = self._paths[name].partition(":")
        return getattr(importlib.import_module(module), attr)

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __repr__(self) -> str:
        return f"DETECTORS({', '.join(self._paths)})"


DETECTORS: Mapping[str, type[Detector]] = _LazyDetectors(_PATHS)


def make_detector(name: str, **params: Any) -> Detector:
    """A new detector by registry name; :class:`ConfigError` for an unknown name or parameter."""
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {name!r}; valid: {', '.join(DETECTORS)}")
    cls = DETECTORS[name]
    valid = sorted(cls().get_params(deep=False))
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) for detector {name!r}: {', '.join(unknown)}; valid: {', '.join(valid)}"
        )
    return cls(**params)


def choose_auto(has_labels: bool) -> str:
    """Detector for ``model: auto``: "boosted" when labels with both classes exist, else "autoencoder" (the better
    unsupervised detector of both kinds; see docs/experiments.md#choosing-auto)."""
    return "boosted" if has_labels else "autoencoder"
