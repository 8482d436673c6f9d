"""``netsentry simulate``: scenario → cloud → connections (benign + injected events) → packets →
one pcap per capture point, ``tenants.yaml`` and ``labels.csv``. Same scenario and seed, same bytes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.core.io import atomic_dir
from netsentry.pipeline.simulate import events as ev
from netsentry.pipeline.simulate.cloud import Cloud, build_cloud
from netsentry.pipeline.simulate.conns import ConnTable, concat
from netsentry.pipeline.simulate.episodes import generate_episodes
from netsentry.pipeline.simulate.observe import observe
from netsentry.pipeline.simulate.paths import with_ambient_impairments
from netsentry.pipeline.simulate.pcapwrite import write_pcap
from netsentry.pipeline.simulate.scenario import Scenario, load_scenario
from netsentry.pipeline.simulate.tcpgen import P_TSEND, generate_packets


@dataclass
class SimulationResult:
    """Everything a simulation made, before it is written."""

    scenario: Scenario
    cloud: Cloud
    conns: ConnTable
    packets: np.ndarray  # tcpgen rows
    labels: list[ev.Label]
    seconds: float = 0.0
    files: dict[str, int] = field(default_factory=dict)  # capture point → packets written


def _load_behaviours() -> None:
    """Import the modules that register benign/compromise/fault generators."""
    import netsentry.pipeline.simulate.attacks
    import netsentry.pipeline.simulate.faults  # noqa: F401


def simulate(sc: Scenario) -> SimulationResult:
    """Run the traffic model for ``sc`` (deterministic in ``sc.seed``)."""
    from netsentry.pipeline.simulate.benign import benign_connections

    _load_behaviours()
    t_start = time.perf_counter()
    rng = np.random.default_rng(sc.seed)
    cloud = build_cloud(sc, rng)
    t0 = sc.start_ns
    t1 = t0 + int(sc.duration_s * 1e9)
    ctx = ev.SimContext(sc, cloud, rng, t0, t1)
    tables = [benign_connections(ctx)]
    labels: list[ev.Label] = []
    events = list(sc.events) + generate_episodes(sc.episodes, cloud, sc.events, sc.duration_s)
    for i, e in enumerate(events):
        if e.kind != "compromise":
            continue
        fn = ev.COMPROMISES.get(e.type)
        if fn is None:
            raise ConfigError(
                f"events[{i}].type: unknown compromise {e.type!r}; known: {', '.join(sorted(ev.COMPROMISES))}"
            )
        start = t0 + int(e.start_s * 1e9)
        end = min(t1, start + int(e.duration_s * 1e9))
        conns, labs = fn(ctx, cloud.index(e.target), start, end, e.params)
        tables.append(conns)
        labels += labs
    conns = concat(tables)
    for i, e in enumerate(events):
        if e.kind != "fault":
            continue
        ffn = ev.FAULTS.get(e.type)
        if ffn is None:
            raise ConfigError(f"events[{i}].type: unknown fault {e.type!r}; known: {', '.join(sorted(ev.FAULTS))}")
        start = t0 + int(e.start_s * 1e9)
        end = min(t1, start + int(e.duration_s * 1e9))
        conns, labs = ffn(ctx, conns, e.target, start, end, e.params)
        conns = concat([conns])
        labels += labs
    if sc.ambient_impairments:
        conns = with_ambient_impairments(ctx, conns)
    # connections that start after the scenario ends are not part of it
    conns = conns.select(conns["start_ns"] < t1)
    packets = generate_packets(conns, sc.seed)
    packets = packets[packets[:, P_TSEND] < t1]  # nothing sent after the end of the capture
    return SimulationResult(sc, cloud, conns, packets, labels, seconds=time.perf_counter() - t_start)


def write_outputs(res: SimulationResult, out_dir: str | Path, snaplen: int = 0) -> dict[str, int]:
    """Write ``<point>.pcap`` per capture point, ``tenants.yaml``, ``labels.csv`` and a manifest into
    ``out_dir`` (replaced as a whole, atomically). Returns packets written per capture point."""
    counts: dict[str, int] = {}
    with atomic_dir(out_dir) as tmp:
        for point in res.scenario.capture_points:
            obs = observe(res.packets, res.conns, res.cloud, point)
            write_pcap(tmp / f"{point}.pcap", obs, snaplen)
            counts[point] = len(obs["ts_ns"])
        (tmp / "tenants.yaml").write_text(
            "# the simulated cloud, in the format `netsentry capture --tenants` reads\n"
            + yaml.safe_dump(res.cloud.tenants_yaml(), sort_keys=False)
        )
        ev.write_labels(tmp / "labels.csv", res.labels)
        manifest = {
            "scenario": res.scenario.name,
            "seed": res.scenario.seed,
            "duration_s": res.scenario.duration_s,
            "vms": len(res.cloud),
            "connections": len(res.conns),
            "packets": counts,
            "labels": len(res.labels),
        }
        (tmp / "_manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    res.files = counts
    return counts


def simulate_to_dir(
    scenario_path: str | Path,
    out_dir: str | Path,
    *,
    seed: int | None = None,
    duration_s: float | None = None,
    snaplen: int = 0,
) -> SimulationResult:
    """Load a scenario file, simulate it and write the outputs (``snaplen`` bytes per frame, 0: whole)."""
    sc = load_scenario(scenario_path, duration_s=duration_s, seed=seed)
    res = simulate(sc)
    write_outputs(res, out_dir, snaplen=snaplen)
    return res
