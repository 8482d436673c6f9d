"""Generated episodes: each block draws its counts per type inside its span, on VMs free of other compromises,
from its own seed; every drawn event simulates and is labelled; bad blocks are named errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.simulate.cloud import build_cloud
from netsentry.pipeline.simulate.episodes import COMPROMISE_DRAWS, FAULT_DRAWS, generate_episodes
from netsentry.pipeline.simulate.scenario import Scenario, load_scenario
from netsentry.pipeline.simulate.stage import simulate
from tests.simulate.test_attacks import CLOUD

EVERY = {t: 1 for t in COMPROMISE_DRAWS}
ALL_FAULTS = {t: 1 for t in FAULT_DRAWS}


def scenario(blocks: list[dict[str, Any]], events: list[dict[str, Any]] | None = None, **over: Any) -> Scenario:
    sc = {"name": "ep", "duration_s": 400, "seed": 3, "cloud": CLOUD, "episodes": blocks, "events": events or []}
    return Scenario.model_validate({**sc, **over})


def drawn(sc: Scenario) -> list[Any]:
    cloud = build_cloud(sc, np.random.default_rng(sc.seed))
    return generate_episodes(sc.episodes, cloud, sc.events, sc.duration_s)


def test_counts_span_and_free_vms() -> None:
    written = [{"kind": "compromise", "type": "c2_beacon", "target": "acme-web-1", "start_s": 0, "duration_s": 400}]
    sc = scenario([{"start_s": 50, "end_s": 390, "seed": 4, "compromise": {"bruteforce": 3, "ping_sweep": 2},
                    "faults": {"loss_burst": 2}}], written)  # fmt: skip
    ev = drawn(sc)
    assert sorted(e.type for e in ev) == ["bruteforce"] * 3 + ["loss_burst"] * 2 + ["ping_sweep"] * 2
    assert all(e.start_s >= 50 and e.start_s + e.duration_s <= 390 + 0.1 for e in ev)
    comp = [e for e in ev if e.kind == "compromise"]
    assert all(e.target != "acme-web-1" for e in comp)  # busy with the written beacon all along
    for a in comp:  # one drawn compromise per VM at a time, 20 s apart
        for b in comp:
            if a is not b and a.target == b.target:
                assert a.start_s + a.duration_s + 20 <= b.start_s or b.start_s + b.duration_s + 20 <= a.start_s
    assert all(e.target.startswith("host") or e.target == "gateway" for e in ev if e.type == "loss_burst")


def test_deterministic_and_blocks_independent() -> None:
    one = {"start_s": 0, "end_s": 200, "seed": 1, "compromise": {"c2_beacon": 1, "reflection": 2}}
    two = {"start_s": 200, "end_s": 400, "seed": 2, "compromise": {"udp_sweep": 2}}
    a, b = drawn(scenario([one])), drawn(scenario([one]))
    assert [e.model_dump() for e in a] == [e.model_dump() for e in b]
    both = drawn(scenario([one, two]))
    assert [e.model_dump() for e in both[: len(a)]] == [e.model_dump() for e in a]  # adding a block changes nothing
    other = drawn(scenario([{**one, "seed": 9}]))
    assert [e.model_dump() for e in other] != [e.model_dump() for e in a]


def test_every_type_simulates_and_is_labelled() -> None:
    sc = scenario([{"start_s": 10, "end_s": 390, "seed": 5, "compromise": EVERY, "faults": ALL_FAULTS}],
                  cloud={**CLOUD, "hosts": 3})  # fmt: skip
    res = simulate(sc)
    kinds = {(lab.kind, lab.scenario) for lab in res.labels}
    assert {("compromise", t) for t in COMPROMISE_DRAWS} <= kinds
    assert {("fault", t) for t in FAULT_DRAWS} <= kinds
    assert len(res.packets) > 0


def test_bad_blocks_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown type 'mining'"):
        drawn(scenario([{"end_s": 100, "compromise": {"mining": 1}}]))
    with pytest.raises(ConfigError, match="faults: unknown type 'flood'"):
        drawn(scenario([{"end_s": 100, "faults": {"flood": 1}}]))
    with pytest.raises(ConfigError, match="no VM is free"):
        drawn(scenario([{"start_s": 0, "end_s": 60, "compromise": {"ddos_syn": 60}}]))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "cloud": CLOUD, "episodes": [{"start_s": 50, "end_s": 10}]}))
    with pytest.raises(ConfigError, match=r"episodes\.0.*end_s"):
        load_scenario(path)
    path.write_text(
        yaml.safe_dump({"name": "x", "cloud": CLOUD, "duration_s": 60, "episodes": [{"start_s": 70, "end_s": 90}]})
    )
    with pytest.raises(ConfigError, match="after the scenario ends"):
        load_scenario(path)
    assert load_scenario(path, duration_s=50).episodes == []  # a shortened run keeps the blocks that start in it


def test_lateral_movement_only_where_peers_exist() -> None:
    ev = drawn(scenario([{"end_s": 400, "seed": 8, "compromise": {"lateral_movement": 4}}]))
    assert len(ev) == 4 and "solo-batch-1" not in {e.target for e in ev}
