"""The richer benign world: per-VM habits, p2p clients, ambient loss and reordering (known answers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from netsentry.pipeline.simulate import tcpgen as tg
from netsentry.pipeline.simulate.benign import benign_connections
from netsentry.pipeline.simulate.conns import (
    OUTCOME_FIN,
    OUTCOME_NO_ANSWER,
    OUTCOME_OPEN,
    OUTCOME_REJECT,
    OUTCOME_RST_CLIENT,
    ConnTable,
)
from netsentry.pipeline.simulate.events import S
from netsentry.pipeline.simulate.habits import (
    FANOUT_ROLES,
    HEALTH_PERIODS_S,
    HEALTH_PORTS,
    _Habits,
    habit_connections,
)
from netsentry.pipeline.simulate.p2p import BITCOIN_PORT, p2p_connections, random_public
from netsentry.pipeline.simulate.stage import simulate_to_dir
from tests.conftest import workspace_of
from tests.simulate.test_benign import MIXED, make_ctx, tenant


@pytest.fixture(scope="module")
def hour() -> tuple[object, ConnTable]:
    ctx = make_ctx([tenant("a", "10.0.0.0/24", {**MIXED, "desktop": 2})], duration_s=3600, seed=3)
    return ctx, habit_connections(ctx, np.ones(len(ctx.cloud)))


def test_ntp_timer_period_is_a_power_of_two_times_64(hour: tuple[object, ConnTable]) -> None:
    _, c = hour
    ntp = c.select((c["sport"] == 123) & (c["proto"] == 17))
    assert len(ntp) > 0
    key = ntp["client"].astype(np.uint64) << np.uint64(32) | ntp["server"].astype(np.uint64)
    for k in np.unique(key):
        t = np.sort(ntp["start_ns"][key == k])
        if len(t) < 3:
            continue
        d = np.diff(t) / S
        period = np.median(d)
        assert any(abs(period - 64 * 2**e) < 0.01 * 64 * 2**e for e in range(5)), period


def test_failed_connections_of_every_kind(hour: tuple[object, ConnTable]) -> None:
    _, c = hour
    tcp = c["proto"] == 6
    refused = (c["outcome"] == OUTCOME_REJECT) & tcp
    timed_out = (c["outcome"] == OUTCOME_NO_ANSWER) & tcp
    # ~1/300 s per VM (lognormal across VMs): an hour of 10 VMs makes tens to hundreds
    assert 20 <= refused.sum() <= 400 and 20 <= timed_out.sum() <= 400
    assert (c["syn_retries"][timed_out] == 2).all()
    assert ((c["proto"] == 17) & (c["resp_bytes"] == 0)).any()  # unanswered UDP


def test_desktops_have_client_habits(hour: tuple[object, ConnTable]) -> None:
    ctx, c = hour
    desk = np.flatnonzero(ctx.cloud.role == "desktop")
    smb = c.select((c["sport"] == 445) & (c["outcome"] == OUTCOME_OPEN))  # sessions (directory refreshes close)
    assert set(desk) <= set(smb["client_vm"].tolist())
    assert (smb["burst_rounds"] >= 3).all()
    assert (smb["idle_ns"] >= 20 * S).all()
    # CDN bursts: >= 10 distinct servers within 10 s from one desktop
    d0 = c.select((c["client_vm"] == desk[0]) & (c["sport"] == 443) & (c["server_vm"] < 0))
    t = d0["start_ns"]
    best = max(len(np.unique(d0["server"][(t >= x) & (t < x + 10 * S)])) for x in t)
    assert best >= 10


def test_directory_refreshes_are_short_connections_on_several_ports_of_one_peer(
    hour: tuple[object, ConnTable],
) -> None:
    """Desktops refresh with one directory server of their VPC every ~2 min: 3-6 short connections within 2 s."""
    ctx, c = hour
    desk = np.flatnonzero(ctx.cloud.role == "desktop")
    d = c.select(np.isin(c["client_vm"], desk) & np.isin(c["sport"], (389, 135, 3268, 636)))
    members = set(np.unique(d["client_vm"]).tolist())
    assert members <= set(desk.tolist()) and len(members) >= len(desk) - 1  # the DC itself may be a desktop
    for vm in members:
        mine = d.select(d["client_vm"] == vm)
        assert len(np.unique(mine["server_vm"])) == 1 and mine["server_vm"][0] >= 0  # one peer: the VPC's DC
        assert 3600 / 120 * 0.5 <= len(mine) <= 3600 / 120 * 6  # ~30 refreshes of 3-6 connections (some on 445)
        assert (mine["outcome"] == OUTCOME_FIN).all()


def test_fanout_jobs_ask_several_backends_at_once_in_rounds() -> None:
    """Aggregators (web/app only) ask 3-12 VPC peers at once, 1-10 rounds ~1 s apart: a backend sees a burst of
    short connections from a caller that it may not have heard from before."""
    ctx = make_ctx([tenant("a", "10.0.0.0/24", {**MIXED, "web": 6})], duration_s=3600, seed=3)
    c = _Habits(ctx, np.ones(len(ctx.cloud))).fanout()
    assert len(c) > 0
    assert set(ctx.cloud.role[np.unique(c["client_vm"])]) <= set(FANOUT_ROLES)
    assert (c["server_vm"] >= 0).all() and (c["server_vm"] != c["client_vm"]).all() and (c["sport"] == 8080).all()
    # a round: one connection to each of 3-12 distinct backends within 2 ms
    t, cl = c["start_ns"], c["client_vm"]
    first = np.flatnonzero((cl == cl[0]) & (t - t[0] < 2_000_000) & (t >= t[0]))
    assert 3 <= len(first) <= 12 and len(np.unique(c["server_vm"][first])) == len(first)
    # per (aggregator, backend): rounds ~1 s apart (0.5-1.5 s), a burst of several connections
    pair = cl.astype(np.int64) * 1000 + c["server_vm"]
    gaps = np.concatenate([np.diff(np.sort(t[pair == k])) for k in np.unique(pair)]) / S
    in_job = gaps[gaps < 1.6]
    assert len(in_job) > 100 and 0.8 <= np.median(in_job) <= 1.2


def test_health_checks_probe_a_servers_port_at_a_fixed_period() -> None:
    """Web, app and db VMs are checked by 1-3 checkers each at one of the load balancers' periods, on their service
    port: a bare connect that says nothing (closed by the checker) or a small GET; web VMs by internet probers."""
    ctx = make_ctx([tenant("a", "10.0.0.0/24", {"web": 12, "app": 12, "db": 12, "batch": 4})], duration_s=600, seed=5)
    c = _Habits(ctx, np.ones(len(ctx.cloud))).health()
    role = ctx.cloud.role
    checked = np.unique(c["server_vm"])
    assert 8 <= len(checked) <= 28 and set(role[checked]) <= set(HEALTH_PORTS)  # ~half of 36, never batch
    for vm in checked:
        mine = c.select(c["server_vm"] == vm)
        assert set(mine["sport"].tolist()) <= set(HEALTH_PORTS[str(role[vm])])
        key = mine["client"]
        assert 1 <= len(np.unique(key)) <= 3
        if role[vm] == "web":
            assert (mine["client_vm"] == -1).all()
        for k in np.unique(key):
            period = np.median(np.diff(np.sort(mine["start_ns"][key == k]))) / S
            assert np.isclose(HEALTH_PERIODS_S, period, rtol=0.01).any(), period
    bare = c["rounds"] == 0
    assert bare.any() and (~bare).any()
    assert (c["req_bytes"][bare] == 0).all() and np.isin(c["outcome"][bare], (OUTCOME_FIN, OUTCOME_RST_CLIENT)).all()
    assert (c["req_bytes"][~bare] > 0).all() and (c["resp_bytes"][~bare] > 0).all()


def test_habits_off_and_zero_rate_mean_none() -> None:
    ctx = make_ctx([tenant("a", "10.0.0.0/24", MIXED)], duration_s=600, benign_rate=0.0, habits=True)
    assert len(benign_connections(ctx)) == 0
    ctx = make_ctx([tenant("a", "10.0.0.0/24", MIXED)], duration_s=600, habits=True)
    with_habits = benign_connections(ctx)
    ctx.scenario.habits = False
    ctx.rng = np.random.default_rng(1)
    without = benign_connections(ctx)
    assert (with_habits["sport"] == 123).any() and not (without["sport"] == 123).any()


def test_p2p_fans_out_and_most_attempts_fail() -> None:
    ctx = make_ctx([tenant("a", "10.0.0.0/24", {"p2p": 4})], duration_s=1800, seed=5)
    c = p2p_connections(ctx, np.ones(len(ctx.cloud)))
    out = c.select((c["client_vm"] >= 0) & (c["proto"] == 6))
    for vm in range(4):
        mine = out.select(out["client_vm"] == vm)
        assert len(np.unique(mine["server"])) >= 100  # 0.1–0.5 attempts/s for 30 min, fresh peers
        failed = np.isin(mine["outcome"], [OUTCOME_REJECT, OUTCOME_NO_ANSWER]).mean()
        assert 0.4 <= failed <= 0.95
    assert (out["sport"] == BITCOIN_PORT).any() or (c["proto"] == 17).any()


def test_random_public_addresses_are_public() -> None:
    a = random_public(np.random.default_rng(0), 5000).astype(np.int64)
    assert len(np.unique(a)) > 4990
    for net, bits in ((0x0A000000, 8), (0xAC100000, 12), (0xC0A80000, 16), (0x64400000, 10), (0x7F000000, 8)):
        assert not ((a >> (32 - bits)) == (net >> (32 - bits))).any()
    assert not np.isin(a & 0xFF, [0, 255]).any()


def bulk(n: int, **cols: object) -> ConnTable:
    """``n`` internet downloads of 300 kB (one round) with the given impairment columns."""
    return ConnTable.make(n, start_ns=np.arange(n) * 10 * S, client=1, server=2, cport=40000, sport=443,
                          rtt_ns=20_000_000, req_bytes=300, resp_bytes=300_000, **cols)  # fmt: skip


def test_ambient_loss_makes_retransmissions_at_about_the_rate() -> None:
    P = tg.generate_packets(bulk(200, ambient_loss_p=0.01), seed=1)
    data = P[(P[:, tg.P_DIR] == 1) & (P[:, tg.P_LEN] > 0)]
    unique = len(np.unique(data[:, tg.P_CONN] * (1 << 33) + data[:, tg.P_SEQ]))
    retrans = len(data) - unique
    rate = retrans / unique  # ~41k segments: 1 % ± a few binomial σ (σ ≈ 0.05 %), plus lost retransmissions
    assert 0.008 <= rate <= 0.013, rate
    fins = P[(P[:, tg.P_FLAGS] & tg.FIN) > 0]
    assert len(fins) >= 400  # both FINs of every connection; lost ones retransmitted on top
    clean = tg.generate_packets(bulk(20), seed=1)
    d = clean[(clean[:, tg.P_DIR] == 1) & (clean[:, tg.P_LEN] > 0)]
    assert len(d) == len(np.unique(d[:, tg.P_CONN] * (1 << 33) + d[:, tg.P_SEQ]))


def test_reordering_without_loss_gives_dup_acks_but_no_retransmission() -> None:
    P = tg.generate_packets(bulk(50, reorder_p=0.05), seed=2)
    data = P[(P[:, tg.P_DIR] == 1) & (P[:, tg.P_LEN] > 0)]
    assert len(data) == len(np.unique(data[:, tg.P_CONN] * (1 << 33) + data[:, tg.P_SEQ]))
    overtaken = 0
    for c in range(50):
        d = data[data[:, tg.P_CONN] == c]
        arrival_order = d[np.argsort(d[:, tg.P_TRECV], kind="stable"), tg.P_SEQ]
        overtaken += int((np.diff(arrival_order.astype(np.int64)) < 0).sum())
    assert overtaken > 0
    acks = P[(P[:, tg.P_DIR] == 0) & (P[:, tg.P_LEN] == 0) & (P[:, tg.P_FLAGS] == tg.ACK)]
    dup = 0
    for c in range(50):
        a = acks[acks[:, tg.P_CONN] == c, tg.P_ACK]
        dup += int((np.diff(a) == 0).sum())
    assert dup >= overtaken * 0.5


def test_refused_and_timed_out_connections_reach_the_flow_table(tmp_path: Path) -> None:
    """A small cloud through simulate → capture → flows: REJ (RST to a SYN) and S0 (unanswered SYNs) flows."""
    sc = {"name": "h", "duration_s": 900, "seed": 4, "cloud": {"hosts": 2, "external_hosts": 40, "tenants": [
        tenant("a", "10.0.0.0/24", {"web": 1, "app": 1, "db": 1, "desktop": 1})]}}  # fmt: skip
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sc))
    simulate_to_dir(path, tmp_path / "sim", snaplen=128)
    ws = workspace_of([tmp_path / "sim" / "vm.pcap"], tmp_path / "ws", tmp_path / "sim" / "tenants.yaml")
    flows = pq.read_table(ws / "flows").to_pandas()
    states = flows["conn_state"].astype(str).value_counts()
    assert states.get("REJ", 0) > 0 and states.get("S0", 0) > 0
    assert (flows["dst_port"] == 123).any() if "dst_port" in flows else True
