"""Benign traffic model: who talks to whom on which port, rates, heavy tails, determinism."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from netsentry.pipeline.simulate.benign import RATES, benign_connections
from netsentry.pipeline.simulate.cloud import build_cloud
from netsentry.pipeline.simulate.conns import APP_DNS, APP_HTTP, APP_SQL, APP_SSH, APP_TLS, ConnTable
from netsentry.pipeline.simulate.events import S, SimContext
from netsentry.pipeline.simulate.scenario import Scenario

MIXED = {"web": 2, "app": 2, "db": 1, "dns": 1, "batch": 1, "admin": 1}


def tenant(name: str, cidr: str, roles: dict[str, int], rate: float = 1.0) -> dict[str, Any]:
    """A tenant with one VPC and one subnet holding ``roles`` (role → count)."""
    vms = [{"role": r, "count": c} for r, c in roles.items() if c]
    subnet = {"name": f"{name}-sub", "cidr": cidr, "vms": vms}
    return {"name": name, "rate": rate, "vpcs": [{"id": f"{name}-vpc", "cidr": cidr, "subnets": [subnet]}]}


def make_ctx(tenants: list[dict[str, Any]], duration_s: float = 60.0, seed: int = 1, hosts: int = 4,
             benign_rate: float = 1.0, overlay: str = "none", habits: bool = False,
             load_sigma: float = 0.0) -> SimContext:  # fmt: skip
    """The context ``run.simulate`` builds: cloud from the scenario, then the same rng for behaviours (per-VM habits
    off unless ``habits``, every VM at its tenant's rate unless ``load_sigma``: these tests pin the role classes;
    tests/simulate/test_habits.py covers the habits)."""
    sc = Scenario.model_validate({
        "name": "t", "duration_s": duration_s, "seed": seed, "benign_rate": benign_rate, "overlay": overlay,
        "habits": habits, "vm_load_sigma": load_sigma,
        "cloud": {"hosts": hosts, "external_hosts": 60, "tenants": tenants},
    })  # fmt: skip
    rng = np.random.default_rng(seed)
    cloud = build_cloud(sc, rng)
    return SimContext(sc, cloud, rng, sc.start_ns, sc.start_ns + int(duration_s * S))


def roles_of(ctx: SimContext, vm: np.ndarray) -> np.ndarray:
    """Role of each VM index (``"internet"`` for -1)."""
    return np.append(ctx.cloud.role, "internet")[vm.astype(np.int64)]


@pytest.fixture(scope="module")
def long_run() -> tuple[SimContext, ConnTable]:
    """Two tenants (the second without a dns VM), 30 minutes: every class shows up."""
    ctx = make_ctx([tenant("a", "10.0.0.0/24", MIXED), tenant("b", "10.1.0.0/24", {"web": 1, "app": 1, "db": 1,
                    "batch": 1, "admin": 1})], duration_s=1800)  # fmt: skip
    return ctx, benign_connections(ctx)


def test_all_connections_inside_the_scenario(long_run: tuple[SimContext, ConnTable]) -> None:
    ctx, c = long_run
    assert len(c) > 10_000
    assert (c["start_ns"] >= ctx.t0).all() and (c["start_ns"] < ctx.t1).all()
    assert (np.diff(c["start_ns"]) >= 0).all()
    assert (c["rounds"] >= 1).all() and (c["req_bytes"] > 0).all()
    # VM ends carry the VM's address; internal traffic stays in its VPC
    for end, vm in (("client", "client_vm"), ("server", "server_vm")):
        m = c[vm] >= 0
        assert (c[end][m] == ctx.cloud.ip[c[vm][m]]).all()
    both = (c["client_vm"] >= 0) & (c["server_vm"] >= 0)
    vpc = np.array(ctx.cloud.vpc, dtype=object)
    assert (vpc[c["client_vm"][both]] == vpc[c["server_vm"][both]]).all()


def test_web_serves_internet_and_calls_app(long_run: tuple[SimContext, ConnTable]) -> None:
    ctx, c = long_run
    inbound = (roles_of(ctx, c["server_vm"]) == "web") & (roles_of(ctx, c["client_vm"]) != "admin")
    assert (c["client_vm"][inbound] == -1).all()
    assert np.isin(c["client"][inbound], ctx.cloud.external).all()
    ports = c["sport"][inbound]
    assert set(np.unique(ports)) == {80, 443}
    assert (c["app"][inbound][ports == 80] == APP_HTTP).all() and (c["app"][inbound][ports == 443] == APP_TLS).all()
    assert 0.6 < (ports == 443).mean() < 0.8
    calls = (roles_of(ctx, c["client_vm"]) == "web") & (c["proto"] == 6)
    assert (roles_of(ctx, c["server_vm"][calls]) == "app").all()
    assert (c["sport"][calls] == 8080).all() and (c["app"][calls] == APP_HTTP).all()


def test_app_queries_db_and_external_apis(long_run: tuple[SimContext, ConnTable]) -> None:
    ctx, c = long_run
    app = (roles_of(ctx, c["client_vm"]) == "app") & (c["proto"] == 6)
    to_db = app & (roles_of(ctx, c["server_vm"]) == "db")
    assert to_db.sum() > 1000
    assert np.isin(c["sport"][to_db], (5432, 3306)).all() and (c["app"][to_db] == APP_SQL).all()
    assert (c["rounds"][to_db] >= 2).all() and c["rounds"][to_db].mean() > 4
    # each database speaks one protocol
    for db in np.unique(c["server_vm"][to_db]):
        assert len(np.unique(c["sport"][to_db & (c["server_vm"] == db)])) == 1
    api = app & (c["server_vm"] == -1)
    assert api.sum() > 100 and (c["sport"][api] == 443).all() and (c["app"][api] == APP_TLS).all()
    assert app.sum() == to_db.sum() + api.sum()


def test_dns_per_vpc(long_run: tuple[SimContext, ConnTable]) -> None:
    ctx, c = long_run
    udp = c["proto"] == 17
    assert (c["sport"][udp] == 53).all() and (c["app"][udp] == APP_DNS).all()
    dns_vm = ctx.cloud.with_role("dns")
    a_vms = [i for i in range(len(ctx.cloud)) if ctx.cloud.tenant[i] == "a"]
    b_vms = [i for i in range(len(ctx.cloud)) if ctx.cloud.tenant[i] == "b"]
    for i in a_vms:
        if ctx.cloud.role[i] == "dns":
            continue
        q = udp & (c["client_vm"] == i)
        # every VM asks its VPC's dns VM, 0.1–0.5 q/s
        assert (c["server_vm"][q] == dns_vm[0]).all()
        assert 0.07 * 1800 < q.sum() < 0.6 * 1800
    for i in b_vms:  # no dns VM in b's VPC: a public resolver
        q = udp & (c["client_vm"] == i)
        assert q.sum() > 0.07 * 1800 and (c["server_vm"][q] == -1).all()
        assert len(np.unique(c["server"][q])) <= 2
    fwd = udp & (c["client_vm"] == dns_vm[0])
    answered = udp & (c["server_vm"] == dns_vm[0])
    assert (c["server_vm"][fwd] == -1).all()
    assert 0.2 < fwd.sum() / answered.sum() < 0.4


def test_batch_backups_are_large_and_periodic() -> None:
    ctx = make_ctx([tenant("a", "10.0.0.0/24", MIXED)], duration_s=3600)
    c = benign_connections(ctx)
    b = (roles_of(ctx, c["client_vm"]) == "batch") & (c["proto"] != 17)
    assert (c["proto"][b] == 6).all()
    assert 10 <= b.sum() <= 14  # every 300 s
    gaps = np.diff(c["start_ns"][b]) / S
    assert (gaps > 180).all() and (gaps < 420).all() and 285 < gaps.mean() < 315  # ± 5 % jitter (σ 15 s)
    assert (c["req_bytes"][b] >= 10_000_000).all() and (c["req_bytes"][b] <= 400_000_000).all()
    assert np.isin(c["sport"][b], (873, 22, 443)).all()
    assert np.isin(roles_of(ctx, c["server_vm"][b]), ("db", "internet")).all()


def test_admin_ssh_sessions_and_pings(long_run: tuple[SimContext, ConnTable]) -> None:
    ctx, c = long_run
    adm = roles_of(ctx, c["client_vm"]) == "admin"
    ssh = adm & (c["proto"] == 6)
    assert ssh.sum() >= 30  # 2 admins × 1/60 s × 1800 s = 60 expected
    assert (c["sport"][ssh] == 22).all() and (c["app"][ssh] == APP_SSH).all()
    lasts = c["rounds"][ssh] * c["think_ns"][ssh] / S
    assert np.median(lasts) > 60 and np.median(c["req_bytes"][ssh]) < 100
    icmp = adm & (c["proto"] == 1)
    assert icmp.sum() >= 30 and (c["server_vm"][icmp] >= 0).all()
    assert (c["proto"][~adm] != 1).all()


def test_heavy_tailed_responses(long_run: tuple[SimContext, ConnTable]) -> None:
    ctx, c = long_run
    web = roles_of(ctx, c["server_vm"]) == "web"
    p50, p99 = np.percentile(c["resp_bytes"][web], [50, 99])
    assert p99 / p50 > 10
    tcp = c["proto"] == 6
    p50, p99 = np.percentile(c["resp_bytes"][tcp], [50, 99])
    assert p99 / p50 > 10


def _per_tenant(ctx: SimContext, c: ConnTable) -> dict[str, int]:
    """Connections per tenant of the Poisson request classes (web_in, web_app, app_db, app_api)."""
    poisson = (c["proto"] == 6) & (c["sport"] != 22)
    vm = np.where(c["client_vm"] >= 0, c["client_vm"], c["server_vm"])[poisson]
    t = np.array(ctx.cloud.tenant, dtype=object)[vm]
    return {name: int((t == name).sum()) for name in ("a", "b")}


def test_rates_scale_with_tenant_rate_and_benign_rate() -> None:
    roles = {"web": 2, "app": 2, "db": 1, "dns": 1, "admin": 1}
    per_s = 2 * (RATES["web_in"] + RATES["web_app"] + RATES["app_db"] + RATES["app_api"])  # one tenant at rate 1

    def close(n: int, expected: float) -> bool:  # within 5 σ of a Poisson count
        return abs(n - expected) < 5 * np.sqrt(expected)

    for benign_rate in (1.0, 0.5):
        ctx = make_ctx([tenant("a", "10.0.0.0/24", roles), tenant("b", "10.1.0.0/24", roles, rate=3.0)], 600,
                       benign_rate=benign_rate)  # fmt: skip
        c = benign_connections(ctx)
        n = _per_tenant(ctx, c)
        assert close(n["a"], per_s * 600 * benign_rate) and close(n["b"], 3 * per_s * 600 * benign_rate)
        # DNS: every VM asks 0.1–0.5 q/s × its tenant's rate × benign_rate
        qs = []
        for vm in range(len(ctx.cloud)):
            if ctx.cloud.role[vm] != "dns":
                mult = (3.0 if ctx.cloud.tenant[vm] == "b" else 1.0) * benign_rate
                qs.append(((c["client_vm"] == vm) & (c["proto"] == 17)).sum() / 600 / mult)
        assert min(qs) > 0.02 and max(qs) < 0.7 and 0.2 < np.mean(qs) < 0.4
    zero = make_ctx([tenant("a", "10.0.0.0/24", roles)], 60, benign_rate=0.0)
    assert len(benign_connections(zero)) == 0


def test_same_seed_same_connections() -> None:
    tenants = [tenant("a", "10.0.0.0/24", MIXED), tenant("b", "10.1.0.0/24", {"web": 1, "app": 1})]
    a = benign_connections(make_ctx(tenants, 300, seed=7))
    b = benign_connections(make_ctx(tenants, 300, seed=7))
    c = benign_connections(make_ctx(tenants, 300, seed=8))
    assert all(np.array_equal(a[k], b[k]) for k in a.cols)
    assert len(a) != len(c) or not np.array_equal(a["start_ns"], c["start_ns"])


def test_overlay_lowers_mss_and_keeps_vni() -> None:
    ctx = make_ctx([tenant("a", "10.0.0.0/24", MIXED)], 60, overlay="vxlan")
    c = benign_connections(ctx)
    vm_end = np.where(c["client_vm"] >= 0, c["client_vm"], c["server_vm"])
    assert (c["vni"] == ctx.cloud.vni[vm_end]).all() and (c["vni"] > 0).all()
    tcp = c["proto"] == 6
    assert (c["mss"][tcp] <= 1398).all()


def test_roles_without_peers_make_no_internal_traffic() -> None:
    ctx = make_ctx([tenant("a", "10.0.0.0/24", {"web": 1, "db": 1})], 120)
    c = benign_connections(ctx)
    assert (c["sport"] != 8080).all()  # no app VM to call
    assert (roles_of(ctx, c["client_vm"]) != "app").all()
    assert len(c) > 100


def test_packet_budget_of_a_small_cloud() -> None:
    """A 60 s, 10-VM cloud makes ~20–60k packets (tcpgen's count inside the scenario)."""
    from netsentry.pipeline.simulate.tcpgen import P_TSEND, generate_packets

    roles = {"web": 2, "app": 2, "db": 2, "dns": 1, "admin": 1}
    ctx = make_ctx([tenant("a", "10.0.0.0/24", roles), tenant("b", "10.1.0.0/24", {"web": 1, "app": 1})], 60)
    c = benign_connections(ctx)
    P = generate_packets(c, 1)
    inside = ((P[:, P_TSEND] >= ctx.t0) & (P[:, P_TSEND] < ctx.t1)).sum()
    assert 20_000 <= inside <= 60_000


def test_vms_of_one_role_carry_their_own_load() -> None:
    """Per-VM load: lognormal around the tenant's rate (mean 1), so web servers of one tenant differ; σ = 0 is flat."""
    from netsentry.pipeline.simulate.benign import vm_multipliers

    ctx = make_ctx([tenant("a", "10.0.0.0/16", {"web": 400})], load_sigma=0.5)
    mult = vm_multipliers(ctx)
    assert 0.9 < mult.mean() < 1.1 and 0.4 < np.log(mult).std() < 0.6
    assert np.quantile(mult, 0.95) / np.quantile(mult, 0.05) > 3
    flat = vm_multipliers(make_ctx([tenant("a", "10.0.0.0/16", {"web": 40})], benign_rate=2.0))
    assert np.all(flat == 2.0)
