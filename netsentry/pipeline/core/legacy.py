"""Module names of netsentry's first layout (top-level ``pipeline`` and ``models`` packages), so that models
registered before the ``netsentry`` package existed still load: their pickles name classes by those modules."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

RENAMED = {
    "pipeline.cicflowmeter": "netsentry.pipeline.train.cicflowmeter",
    "pipeline.config": "netsentry.pipeline.core.config",
    "pipeline.errors": "netsentry.pipeline.core.errors",
    "pipeline.export": "netsentry.pipeline.export.stage",
    "pipeline.features.fault_windows": "netsentry.pipeline.features.faults.builder",
    "pipeline.features.tenant_windows": "netsentry.pipeline.features.tenant.windows",
    "pipeline.findings": "netsentry.pipeline.inspect.findings",
    "pipeline.flow_kernel": "netsentry.pipeline.flows.kernel",
    "pipeline.flow_stage": "netsentry.pipeline.flows.stage",
    "pipeline.flows": "netsentry.pipeline.flows.assemble",
    "pipeline.inspection": "netsentry.pipeline.inspect",
    "pipeline.io": "netsentry.pipeline.core.io",
    "pipeline.locking": "netsentry.pipeline.core.locking",
    "pipeline.progress": "netsentry.pipeline.core.progress",
    "pipeline.pseudonym": "netsentry.pipeline.core.pseudonym",
    "pipeline.retrain": "netsentry.pipeline.retrain.stage",
    "pipeline.schemas": "netsentry.pipeline.core.schemas",
    "pipeline.simulate.run": "netsentry.pipeline.simulate.stage",
    "pipeline.stage_options": "netsentry.pipeline.core.stage_options",
    "pipeline.tracking": "netsentry.pipeline.core.tracking",
    "pipeline.train": "netsentry.pipeline.train.stage",
}
"""Old module → new module where the name changed; any other ``pipeline.X`` is ``netsentry.pipeline.X`` and
``models.X`` is ``netsentry.models.X``."""


def current_name(old: str) -> str | None:
    """Where a module of the first layout lives now (``None``: not one of ours)."""
    for prefix, new in sorted(RENAMED.items(), key=lambda kv: -len(kv[0])):
        if old == prefix or old.startswith(prefix + "."):
            return new + old[len(prefix) :]
    if old in ("pipeline", "models") or old.startswith(("pipeline.", "models.")):
        return f"netsentry.{old}"
    return None


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module that replaced it (the same module object)."""

    _IMPORT_ATTRS = ("__spec__", "__loader__", "__package__", "__path__", "__file__", "__cached__")

    def __init__(self, target: str) -> None:
        self.target = target
        self._own: dict[str, object] = {}

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._own = {k: module.__dict__[k] for k in self._IMPORT_ATTRS if k in module.__dict__}
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Already executed under its own name: give back the import attributes the aliasing overwrote."""
        for k in self._IMPORT_ATTRS:
            if k in self._own:
                setattr(module, k, self._own[k])
            elif k in module.__dict__:
                delattr(module, k)


class _LegacyFinder(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path`` inside :func:`legacy_module_names` (else the path finder would load a second copy
    of ``netsentry/models/iforest.py`` as ``models.iforest`` through the aliased parent's ``__path__``)."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = current_name(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(new), is_package=True)


@contextmanager
def legacy_module_names() -> Iterator[None]:
    """Within the block, ``import models.boosted`` (and the like) gives today's module; afterwards the old names
    are gone again."""
    finder = _LegacyFinder()
    before = set(sys.modules)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in set(sys.modules) - before:
            if not name.startswith("netsentry") and current_name(name) is not None:
                del sys.modules[name]
