"""What behaviour generators share: the simulation context, labels, and the registries that map an
event ``type`` in a scenario to the function generating it."""

from __future__ import annotations

import csv
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.core.io import atomic_write_text
from netsentry.pipeline.core.units import NS_PER_MS as MS
from netsentry.pipeline.core.units import NS_PER_S as S
from netsentry.pipeline.simulate.cloud import Cloud
from netsentry.pipeline.simulate.conns import ConnTable
from netsentry.pipeline.simulate.scenario import Scenario


@dataclass
class Label:
    """Ground truth for one injected event (the labels contract in DESIGN.md).

    ``scope_type``: ``vm`` (scope = the VM's IP), ``host`` (scope = ``hostN`` uplink), ``link``
    (``gateway``), ``host_pair`` (``hostA-hostB``).
    """

    kind: str  # compromise | fault
    scenario: str  # the behaviour, e.g. ssh_bruteforce, loss_burst
    scope_type: str
    scope: str
    start_ns: int
    end_ns: int
    tenant: str = ""
    vm: str = ""
    vni: int = 0
    detail: str = ""

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d["start"] = datetime.fromtimestamp(self.start_ns / S, UTC).isoformat()
        d["end"] = datetime.fromtimestamp(self.end_ns / S, UTC).isoformat()
        return d


LABEL_COLUMNS = ["kind", "scenario", "scope_type", "scope", "start", "end", "start_ns", "end_ns", "tenant", "vm",
                 "vni", "detail"]  # fmt: skip


def write_labels(path: Path, labels: list[Label]) -> None:
    """``labels.csv``: one row per event, sorted by start."""
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LABEL_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for lab in sorted(labels, key=lambda x: (x.start_ns, x.kind, x.scope)):
        w.writerow(lab.row())
    atomic_write_text(path, buf.getvalue())


@dataclass
class SimContext:
    """Everything a generator may use. ``rng`` (or a named :meth:`stream`) is the only source of randomness."""

    scenario: Scenario
    cloud: Cloud
    rng: np.random.Generator
    t0: int  # scenario start, epoch ns
    t1: int  # scenario end, epoch ns

    def stream(self, name: str) -> np.random.Generator:
        """An independent generator for one named behaviour, seeded by the scenario's seed and the name: adding a
        behaviour that draws from its own stream leaves every other draw of the world as it was."""
        return np.random.default_rng([self.scenario.seed, zlib.crc32(name.encode())])

    def vm_rtt_ns(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Round-trip time between VMs ``a`` and ``b`` (indices): 60 µs on one host, 250 µs across hosts."""
        same = self.cloud.host[np.asarray(a)] == self.cloud.host[np.asarray(b)]
        return np.where(same, 60_000, 250_000).astype(np.int64)

    def external_rtt_ns(self, ext_ip: np.ndarray) -> np.ndarray:
        """Round-trip time to an internet host: fixed per address, 8–120 ms (+ the gateway's 0.5 ms)."""
        h = (np.asarray(ext_ip, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
        return (8 * MS + (h % np.uint64(112 * MS)).astype(np.int64) + 500_000).astype(np.int64)

    def ephemeral_ports(self, n: int) -> np.ndarray:
        return self.rng.integers(32768, 61000, size=n).astype(np.uint16)

    def poisson_times(self, rate_per_s: float, start_ns: int, end_ns: int,
                      rng: np.random.Generator | None = None) -> np.ndarray:  # fmt: skip
        """Arrival times of a Poisson process on [start, end) (sorted, int64 ns), drawn from ``rng`` (a
        :meth:`stream`) or else the world's generator."""
        rng = self.rng if rng is None else rng
        span = (end_ns - start_ns) / S
        n = rng.poisson(max(rate_per_s, 0.0) * span)
        return np.sort(start_ns + (rng.random(n) * (end_ns - start_ns)).astype(np.int64))


CompromiseFn = Callable[[SimContext, int, int, int, dict[str, Any]], tuple[ConnTable, list[Label]]]
"""(ctx, vm index, start_ns, end_ns, params) → connections and labels."""
FaultFn = Callable[[SimContext, ConnTable, str, int, int, dict[str, Any]], tuple[ConnTable, list[Label]]]
"""(ctx, all connections so far, target, start_ns, end_ns, params) → connections (impaired or added) and labels."""

COMPROMISES: dict[str, CompromiseFn] = {}
FAULTS: dict[str, FaultFn] = {}


def compromise(name: str) -> Callable[[CompromiseFn], CompromiseFn]:
    """Register a compromise generator under ``name`` (the scenario's event ``type``)."""

    def deco(fn: CompromiseFn) -> CompromiseFn:
        COMPROMISES[name] = fn
        return fn

    return deco


def fault(name: str) -> Callable[[FaultFn], FaultFn]:
    """Register a fault generator under ``name``."""

    def deco(fn: FaultFn) -> FaultFn:
        FAULTS[name] = fn
        return fn

    return deco


def param(params: dict[str, Any], name: str, default: Any, kind: type = float) -> Any:
    """A typed event parameter with a default; a ConfigError naming it when it has the wrong type."""
    if name not in params:
        return default
    try:
        return kind(params[name])
    except (TypeError, ValueError):
        raise ConfigError(f"event parameter {name}={params[name]!r}: expected {kind.__name__}") from None
