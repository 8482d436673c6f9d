"""Transient network faults: impair the connections on a path (loss, delay, black hole) or add the
traffic a fault makes (incast bursts, an RST storm), and label it.

Each generator is registered with :func:`netsentry.pipeline.simulate.events.fault` and has the signature
``(ctx, conns, target, start_ns, end_ns, params) -> (all connections, labels)``: it returns the
*whole* table (an impaired copy, plus any added connections) and never changes ``conns``.

Targets (the scope of the label):

==================  ===========  ==========================================================================
target              scope_type   connections on the path
==================  ===========  ==========================================================================
``hostN``           host         one end a VM on host N, the other end elsewhere (a VM on another host or
                                 an internet host): what crosses that host's uplink. Traffic between two
                                 VMs on host N stays inside the host and is *not* affected.
``gateway``         link         one end an internet host
``hostA-hostB``     host_pair    one end a VM on host A, the other a VM on host B
VM name             host         its host's uplink (as ``hostN``); the label's ``vm`` names the VM
==================  ===========  ==========================================================================

A connection is impaired only when it is on the path *and* may be active during the window (it
starts before the window ends and its generous end estimate, :func:`conn_end_ns`, is after it
starts). A connection holds one loss window and one delay window. When it already has one, windows
that overlap (or touch) merge into their union with the larger loss probability / delay; disjoint
windows keep the stronger one (larger ``loss_p`` / ``delay_ns``), the earlier on a tie.

Receiver faults (``microburst``/``incast`` and ``rst_storm``) are labelled per VM (scope_type
``vm``, scope = the VM's IP), the VM chosen by the target (a VM name, or a VM on ``hostN``).

==============  ===============================================  =============================================
fault           parameters (defaults)                            effect
==============  ===============================================  =============================================
loss_burst      ``loss_p`` 0.05 (alias ``loss``)                 segments on the path dropped with loss_p
latency_spike   ``delay_ms`` 80                                  extra one-way delay on the path
blackhole       ``min_conns`` 6, ``probes`` 8                    loss_p = 1; adds ``probes`` connections across
                                                                 the path (half caught mid-upload) when fewer
                                                                 than ``min_conns`` start in (or 1 s before) it
microburst,     ``fanin`` 32, ``resp_bytes`` 65536,              every ``period_ms``, ``fanin`` responses
incast          ``period_ms`` 1000, ``spread_ms`` 2,             converge on one VM within ``spread_ms``, with
                ``loss_p`` 0.02 (``loss``), ``burst_ms`` 50,     tail drop (loss_p) for ``burst_ms``; sources
                ``sources`` vpc|internet (vpc when it has        are other VMs of its VPC or internet hosts
                other VMs)
rst_storm       ``rate`` 50 (conn/s), ``reject_share`` 0.3       the VM's server connections starting in the
                                                                 window are reset after the request; adds
                                                                 clients' connections at ``rate``, reset (or
                                                                 refused: ``reject_share``)
silent_server   ``server`` (internet host), ``port`` 443,         the client VM's SYNs to one server go
                ``rate`` 0.2, ``syn_retries`` 2                  unanswered (labelled on the VM)
config_change   ``action`` route_withdrawn|filter_pushed,        a gateway change cuts one subnet off the
                ``answer`` silent|icmp, ``min_conns`` 6,         internet: its traffic there dropped at the
                ``probes`` 8                                     gateway; with ``icmp`` the subnet's new
                                                                 connections are refused by ICMP (net
                                                                 unreachable for a route, administratively
                                                                 prohibited for a filter); probes as blackhole
==============  ===============================================  =============================================

``config_change`` targets a subnet: ``tenant/subnet`` or a VM name (its subnet). Its label is ``link`` /
``gateway`` with the tenant and VNI set and, in its detail, ``subnet=CIDR`` and ``vms=``: the addresses of the
subnet's VMs with at least :data:`MIN_CUT_CONNECTIONS` connections across the cut starting in the window, whose
windows it covers (see :func:`netsentry.pipeline.features.labels.label_fault_windows`).

An unknown parameter is a ConfigError (a misspelt one would otherwise be ignored silently).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.simulate import tcpgen as tg
from netsentry.pipeline.simulate.conns import (
    APP_DNS,
    APP_HTTP,
    APP_NONE,
    APP_SQL,
    APP_SSH,
    APP_TLS,
    OUTCOME_ADMIN_PROHIBITED,
    OUTCOME_FIN,
    OUTCOME_NET_UNREACHABLE,
    OUTCOME_NO_ANSWER,
    OUTCOME_OPEN,
    OUTCOME_REJECT,
    OUTCOME_RST_CLIENT,
    OUTCOME_RST_SERVER,
    ConnTable,
    concat,
)
from netsentry.pipeline.simulate.events import MS, Label, S, SimContext, fault, param

_HOST = re.compile(r"host(\d+)")
_PAIR = re.compile(r"host(\d+)-host(\d+)")
ROLE_PORT = {"web": 443, "app": 8080, "db": 5432, "dns": 53, "batch": 22, "admin": 22}
PORT_APP = {80: APP_HTTP, 8080: APP_HTTP, 443: APP_TLS, 22: APP_SSH, 53: APP_DNS, 5432: APP_SQL, 3306: APP_SQL}


@dataclass(frozen=True)
class Path:
    """A resolved fault target: which connections cross it, and how to label it."""

    scope_type: str  # host | link | host_pair
    scope: str  # hostN | gateway | hostA-hostB
    hosts: tuple[int, ...]  # () for the gateway
    vm: int = -1  # the VM named as target, else -1


def resolve_target(ctx: SimContext, target: str) -> Path:
    """``hostN``, ``gateway``, ``hostA-hostB`` or a VM name → the path (ConfigError when unknown)."""
    nh = ctx.cloud.n_hosts
    if target == "gateway":
        return Path("link", "gateway", ())
    if m := _PAIR.fullmatch(target):
        a, b = int(m[1]), int(m[2])
        if a == b or max(a, b) >= nh:
            raise ConfigError(f"fault target {target!r}: need two different hosts among host0…host{nh - 1}")
        return Path("host_pair", target, (a, b))
    if m := _HOST.fullmatch(target):
        h = int(m[1])
        if h >= nh:
            raise ConfigError(f"fault target {target!r}: the cloud has hosts host0…host{nh - 1}")
        return Path("host", target, (h,))
    i = ctx.cloud.index(target)
    h = int(ctx.cloud.host[i])
    return Path("host", f"host{h}", (h,), vm=i)


def end_hosts(ctx: SimContext, conns: ConnTable) -> tuple[np.ndarray, np.ndarray]:
    """Host of each connection's client and server (-1: an internet host)."""
    host = np.append(ctx.cloud.host.astype(np.int64), -1)  # index -1 → -1
    return host[conns["client_vm"].astype(np.int64)], host[conns["server_vm"].astype(np.int64)]


def path_mask(ctx: SimContext, conns: ConnTable, path: Path | str) -> np.ndarray:
    """Which connections cross ``path`` (see the module docstring)."""
    if isinstance(path, str):
        path = resolve_target(ctx, path)
    hc, hs = end_hosts(ctx, conns)
    if path.scope_type == "link":
        return (hc < 0) | (hs < 0)
    if path.scope_type == "host_pair":
        a, b = path.hosts
        return ((hc == a) & (hs == b)) | ((hc == b) & (hs == a))
    (h,) = path.hosts
    return (hc == h) != (hs == h)


def conn_end_ns(conns: ConnTable) -> np.ndarray:
    """A generous upper bound of when each connection's last packet is sent (tcpgen's timing, plus
    SYN retries, the largest delay window and a margin for retransmission timeouts)."""
    c = conns.cols
    mss = np.maximum(c["mss"].astype(np.int64), 1)
    cap = np.maximum(2, tg.WINDOW // mss)
    rtt = c["rtt_ns"] + 2 * c["delay_ns"]
    rounds = c["rounds"].astype(np.int64)

    def xfer(nbytes: np.ndarray) -> np.ndarray:
        segs = (nbytes + mss - 1) // mss
        windows = np.minimum((segs + 9) // 10, 3 + (segs + cap - 1) // cap)
        return windows * (rtt + cap * tg.SEG_GAP_NS + tg.HOST_NS)

    per_round = xfer(c["req_bytes"]) + xfer(c["resp_bytes"]) + c["server_ns"] + c["think_ns"] + rtt
    tcp = c["proto"] == 6
    syn = np.where(tcp, ((1 << np.minimum(c["syn_retries"], 16).astype(np.int64)) - 1) * S + 2 * rtt, 0)
    dur = syn + rounds * np.where(tcp, per_round, c["server_ns"] + np.maximum(c["think_ns"], 1) + rtt)
    slack = np.where(c["loss_p"] > 0, 60 * S, 1 * S)  # retransmission back-off: up to ~50 s
    return c["start_ns"] + dur + dur // 4 + slack


def active_mask(conns: ConnTable, start_ns: int, end_ns: int) -> np.ndarray:
    """Connections that may send packets during ``[start_ns, end_ns)``."""
    return (conns["start_ns"] < end_ns) & (conn_end_ns(conns) > start_ns)


def copy_table(conns: ConnTable) -> ConnTable:
    return ConnTable({k: v.copy() for k, v in conns.cols.items()})


def _merge_window(conns: ConnTable, mask: np.ndarray, value: float, start_ns: int, end_ns: int, vcol: str,
                  fcol: str, tcol: str) -> None:  # fmt: skip
    """Set ``vcol`` over ``[start, end)`` on ``mask`` (in place), merging with an existing window."""
    v, f, t = conns.cols[vcol], conns.cols[fcol], conns.cols[tcol]
    value = v.dtype.type(value)  # compare in the column's precision (float32 loss)
    old = mask & (v > 0) & (t > f)
    touch = old & (f <= end_ns) & (t >= start_ns)
    stronger = old & ~touch & ((value > v) | ((value == v) & (start_ns < f)))
    fresh = mask & ~old
    set_new = fresh | stronger
    v[set_new], f[set_new], t[set_new] = value, start_ns, end_ns
    v[touch] = np.maximum(v[touch], value)
    f[touch] = np.minimum(f[touch], start_ns)
    t[touch] = np.maximum(t[touch], end_ns)


def set_loss(conns: ConnTable, mask: np.ndarray, loss_p: float, start_ns: int, end_ns: int) -> None:
    """Loss ``loss_p`` during ``[start, end)`` on the ``mask``ed connections (in place; merged)."""
    _merge_window(conns, mask, loss_p, start_ns, end_ns, "loss_p", "loss_from_ns", "loss_to_ns")


def set_delay(conns: ConnTable, mask: np.ndarray, delay_ns: int, start_ns: int, end_ns: int) -> None:
    """Extra one-way delay during ``[start, end)`` on the ``mask``ed connections (in place; merged)."""
    _merge_window(conns, mask, delay_ns, start_ns, end_ns, "delay_ns", "delay_from_ns", "delay_to_ns")


def _params(name: str, params: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """``params`` with ``loss`` read as ``loss_p``; a ConfigError naming any unknown parameter."""
    params = dict(params)
    if "loss" in params and "loss_p" in known:
        params.setdefault("loss_p", params.pop("loss"))
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"{name}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return params


def _window(ctx: SimContext, start_ns: int, end_ns: int) -> tuple[int, int]:
    s, e = max(int(start_ns), ctx.t0), min(int(end_ns), ctx.t1)
    if e <= s:
        raise ConfigError(f"fault window [{start_ns}, {end_ns}) lies outside the scenario")
    return s, e


def _path_label(ctx: SimContext, name: str, path: Path, start_ns: int, end_ns: int, detail: str) -> Label:
    cloud = ctx.cloud
    vm = path.vm
    return Label(kind="fault", scenario=name, scope_type=path.scope_type, scope=path.scope, start_ns=start_ns,
                 end_ns=end_ns, tenant=cloud.tenant[vm] if vm >= 0 else "", vm=cloud.name[vm] if vm >= 0 else "",
                 vni=int(cloud.vni[vm]) if vm >= 0 else 0, detail=detail)  # fmt: skip


def _vm_label(ctx: SimContext, name: str, vm: int, start_ns: int, end_ns: int, detail: str) -> Label:
    cloud = ctx.cloud
    ip = ".".join(str((int(cloud.ip[vm]) >> s) & 0xFF) for s in (24, 16, 8, 0))
    return Label(kind="fault", scenario=name, scope_type="vm", scope=ip, start_ns=start_ns, end_ns=end_ns,
                 tenant=cloud.tenant[vm], vm=cloud.name[vm], vni=int(cloud.vni[vm]),
                 detail=f"host=host{int(cloud.host[vm])}; {detail}")  # fmt: skip


# ---------------------------------------------------------------- path faults


@fault("loss_burst")
def loss_burst(ctx: SimContext, conns: ConnTable, target: str, start_ns: int, end_ns: int,
               params: dict[str, Any]) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """Random loss (``loss_p``, alias ``loss``; default 0.05) on the path during the window."""
    params = _params("loss_burst", params, ("loss_p",))
    p = param(params, "loss_p", 0.05)
    if not 0 < p <= 1:
        raise ConfigError(f"loss_burst: loss_p={p} must be in (0, 1]")
    path = resolve_target(ctx, target)
    s, e = _window(ctx, start_ns, end_ns)
    out = copy_table(conns)
    hit = path_mask(ctx, out, path) & active_mask(out, s, e)
    set_loss(out, hit, p, s, e)
    return out, [_path_label(ctx, "loss_burst", path, s, e, f"loss_p={p:g}; connections={int(hit.sum())}")]


@fault("latency_spike")
def latency_spike(ctx: SimContext, conns: ConnTable, target: str, start_ns: int, end_ns: int,
                  params: dict[str, Any]) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """Extra one-way delay (``delay_ms``, default 80) on the path during the window."""
    params = _params("latency_spike", params, ("delay_ms",))
    d_ms = param(params, "delay_ms", 80.0)
    if d_ms <= 0:
        raise ConfigError(f"latency_spike: delay_ms={d_ms} must be positive")
    path = resolve_target(ctx, target)
    s, e = _window(ctx, start_ns, end_ns)
    out = copy_table(conns)
    hit = path_mask(ctx, out, path) & active_mask(out, s, e)
    set_delay(out, hit, int(d_ms * MS), s, e)
    detail = f"delay_ms={d_ms:g}; connections={int(hit.sum())}"
    return out, [_path_label(ctx, "latency_spike", path, s, e, detail)]


@fault("blackhole")
def blackhole(ctx: SimContext, conns: ConnTable, target: str, start_ns: int, end_ns: int,
              params: dict[str, Any]) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """Every packet on the path dropped during the window; probe traffic added when the path is quiet."""
    params = _params("blackhole", params, ("min_conns", "probes"))
    min_conns = param(params, "min_conns", 6, int)
    probes = param(params, "probes", 8, int)
    path = resolve_target(ctx, target)
    s, e = _window(ctx, start_ns, end_ns)
    # traffic that surely crosses during the window: connections starting in it (or just before)
    crossing = path_mask(ctx, conns, path) & (conns["start_ns"] >= s - S) & (conns["start_ns"] < e)
    added = ConnTable()
    if int(crossing.sum()) < min_conns and probes > 0:
        added = _probes(ctx, path, probes, s, e)
    out = concat([copy_table(conns), added])
    hit = path_mask(ctx, out, path) & active_mask(out, s, e)
    set_loss(out, hit, 1.0, s, e)
    detail = f"connections={int(hit.sum())}; added={len(added)}"
    return out, [_path_label(ctx, "blackhole", path, s, e, detail)]


def _path_ends(ctx: SimContext, path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (client VM, server VM or -1 for an internet host) pairs whose connection crosses ``path``."""
    cloud, rng = ctx.cloud, ctx.rng
    vms = np.arange(len(cloud))
    if path.scope_type == "link":
        return rng.choice(vms, n), np.full(n, -1)
    if path.scope_type == "host_pair":
        a_side, b_side = vms[cloud.host == path.hosts[0]], vms[cloud.host == path.hosts[1]]
    else:
        a_side, b_side = vms[cloud.host == path.hosts[0]], vms[cloud.host != path.hosts[0]]
        if path.vm >= 0:
            a_side = np.array([path.vm])
    if not len(a_side) or (path.scope_type == "host_pair" and not len(b_side)):
        raise ConfigError(f"fault target {path.scope}: no VM on that path to carry traffic")
    client = rng.choice(a_side, n)
    server = np.full(n, -1)
    vpc = np.array(cloud.vpc, dtype=object)
    for i in range(n):  # a handful of probes
        same = b_side[vpc[b_side] == vpc[client[i]]]
        pool = same if len(same) else (b_side if path.scope_type == "host_pair" else same)
        server[i] = rng.choice(pool) if len(pool) else -1
    return client, server


def _probes(ctx: SimContext, path: Path, n: int, start_ns: int, end_ns: int) -> ConnTable:
    """Connections across ``path`` from a VM on it: half upload 1–4 MB and are caught by the window
    mid-transfer (the VM's retransmissions back off, visible at its tap), half start inside it."""
    cvm, svm = _path_ends(ctx, path, n)
    return _probe_conns(ctx, cvm, svm, start_ns, end_ns)


def _probe_conns(ctx: SimContext, cvm: np.ndarray, svm: np.ndarray, start_ns: int, end_ns: int,
                 rng: np.random.Generator | None = None) -> ConnTable:  # fmt: skip
    """Connections from VMs ``cvm`` to ``svm`` (-1: an internet host) timed as :func:`_probes` says, drawn from
    ``rng`` (default: the world's)."""
    cloud = ctx.cloud
    rng = ctx.rng if rng is None else rng
    n = len(cvm)
    early = np.arange(n) < n // 2
    ext = cloud.external[rng.integers(0, len(cloud.external), n)]
    internet = svm < 0
    server = np.where(internet, ext, cloud.ip[np.maximum(svm, 0)])
    rtt = np.where(internet, ctx.external_rtt_ns(ext), ctx.vm_rtt_ns(cvm, np.maximum(svm, 0)))
    mss = 1398 if cloud.overlay else 1448
    req = np.where(early, rng.integers(1_000_000, 4_000_000, n), rng.integers(200, 800, n))
    resp = np.where(early, rng.integers(200, 2_000, n), rng.integers(2_000, 40_000, n))
    # how long the upload takes (tcpgen: 64 KiB windows), to start it so the window falls inside
    cap = tg.WINDOW // mss
    upload = 2 * rtt + (3 + req // mss // cap) * (rtt + cap * tg.SEG_GAP_NS + tg.HOST_NS)
    t = np.where(early, start_ns - (rng.uniform(0.1, 0.6, n) * upload).astype(np.int64),
                 start_ns + (rng.random(n) * (end_ns - start_ns)).astype(np.int64))  # fmt: skip
    return ConnTable.make(
        n, start_ns=np.maximum(t, ctx.t0), client=cloud.ip[cvm], server=server,
        cport=rng.integers(32768, 61000, size=n).astype(np.uint16), sport=np.where(internet, 443, 8080),
        vni=cloud.vni[cvm], client_vm=cvm, server_vm=svm, rtt_ns=rtt, mss=mss,
        req_bytes=req, resp_bytes=resp, server_ns=rng.integers(200_000, 3_000_000, n), syn_retries=4,
        app=np.where(internet, APP_TLS, APP_HTTP),
    )  # fmt: skip


# ---------------------------------------------------------------- receiver faults


def _receiver(ctx: SimContext, conns: ConnTable, target: str, name: str, prefer: tuple[str, ...]) -> int:
    """The VM a receiver fault hits: the target VM, or on ``hostN`` a VM of a ``prefer``red role (the
    busiest server among them), else any VM on it."""
    path = resolve_target(ctx, target)
    if path.vm >= 0:
        return path.vm
    if path.scope_type != "host":
        raise ConfigError(f"{name}: target must be a VM or a host (hostN), not {target!r}")
    cloud = ctx.cloud
    on = np.flatnonzero(cloud.host == path.hosts[0])
    if not len(on):
        raise ConfigError(f"{name}: no VM on {target}")
    pref = on[np.isin(cloud.role[on], prefer)]
    cand = pref if len(pref) else on
    served = np.bincount(conns["server_vm"][conns["server_vm"] >= 0], minlength=len(cloud))[cand]
    best = cand[served == served.max()]
    return int(ctx.rng.choice(best))


def _incast(name: str, ctx: SimContext, conns: ConnTable, target: str, start_ns: int, end_ns: int,
            params: dict[str, Any]) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    cloud, rng = ctx.cloud, ctx.rng
    params = _params(name, params, ("fanin", "resp_bytes", "period_ms", "spread_ms", "loss_p", "burst_ms", "sources"))
    fanin = param(params, "fanin", 32, int)
    resp_bytes = param(params, "resp_bytes", 65536, int)
    period = int(param(params, "period_ms", 1000.0) * MS)
    spread = int(param(params, "spread_ms", 2.0) * MS)
    loss_p = param(params, "loss_p", 0.02)
    burst = int(param(params, "burst_ms", 50.0) * MS)
    if fanin < 1 or resp_bytes < 1 or period <= 0 or not 0 <= loss_p <= 1:
        raise ConfigError(f"{name}: fanin, resp_bytes, period_ms must be positive and loss_p in [0, 1]")
    s, e = _window(ctx, start_ns, end_ns)
    r = _receiver(ctx, conns, target, name, ("web", "app"))
    peers = cloud.same_vpc(r)
    sources = param(params, "sources", "vpc" if len(peers) else "internet", str)
    if sources not in ("vpc", "internet"):
        raise ConfigError(f"{name}: sources={sources!r} must be vpc or internet")
    if sources == "vpc" and not len(peers):
        raise ConfigError(f"{name}: {cloud.name[r]} has no other VM in its VPC")
    bursts = s + np.arange(0, e - s, period, dtype=np.int64)
    nb = len(bursts)
    n = nb * fanin
    b_of = np.repeat(np.arange(nb), fanin)
    t = bursts[b_of] + (rng.random(n) * 200_000).astype(np.int64)  # the requests fan out within 0.2 ms
    if sources == "vpc":
        svm = np.tile(rng.permutation(np.resize(peers, max(fanin, len(peers))))[:fanin], nb)
        server = cloud.ip[svm]
        rtt = ctx.vm_rtt_ns(np.full(n, r), svm)
        sport, app = 8080, APP_HTTP
    else:
        svm = np.full(n, -1)
        server = cloud.external[rng.choice(len(cloud.external), n, replace=n > len(cloud.external))]
        rtt = ctx.external_rtt_ns(server)
        sport, app = 443, APP_TLS
    # the responses reach the receiver within ``spread`` of each other: server time absorbs the RTT differences
    # (the request reaches the server after the handshake, 1.5 RTT after the SYN)
    ready = t + 3 * rtt // 2 + 2 * tg.HOST_NS
    arrive = bursts[b_of] + 2 * rtt.max() + 300_000 + (rng.random(n) * spread).astype(np.int64)
    server_ns = np.maximum(arrive - rtt // 2 - ready, 20_000)
    # tail drop while the burst lasts (tcpgen decides loss at send time: from when the responses leave)
    drop_from = ready + server_ns - 100_000
    added = ConnTable.make(
        n, start_ns=t, client=cloud.ip[r], server=server, cport=ctx.ephemeral_ports(n), sport=sport,
        vni=cloud.vni[r], client_vm=r, server_vm=svm, rtt_ns=rtt, mss=1398 if cloud.overlay else 1448,
        req_bytes=rng.integers(100, 400, n), resp_bytes=resp_bytes, server_ns=server_ns, app=app,
        loss_p=loss_p, loss_from_ns=np.where(loss_p > 0, drop_from, 0),
        loss_to_ns=np.where(loss_p > 0, drop_from + burst, 0),
    )  # fmt: skip
    detail = (f"bursts={nb}; fanin={fanin}; resp_bytes={resp_bytes}; sources={sources}; loss_p={loss_p:g}; "
              f"added={n}")  # fmt: skip
    return concat([copy_table(conns), added]), [_vm_label(ctx, name, r, s, e, detail)]


@fault("incast")
def incast(ctx: SimContext, conns: ConnTable, target: str, start_ns: int, end_ns: int,
           params: dict[str, Any]) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """Bursts of ``fanin`` simultaneous responses converging on one VM, with tail drop."""
    return _incast("incast", ctx, conns, target, start_ns, end_ns, params)


@fault("microburst")
def microburst(ctx: SimContext, conns: ConnTable, target: str, start_ns: int, end_ns: int,
               params: dict[str, Any]) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """Same traffic as :func:`incast`, labelled ``microburst``."""
    return _incast("microburst", ctx, conns, target, start_ns, end_ns, params)


@fault("rst_storm")
def rst_storm(ctx: SimContext, conns: ConnTable, target: str, start_ns: int, end_ns: int,
              params: dict[str, Any]) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """A failing service: its connections are reset after the request, and clients retrying get reset too."""
    cloud, rng = ctx.cloud, ctx.rng
    params = _params("rst_storm", params, ("rate", "reject_share"))
    rate = param(params, "rate", 50.0)
    reject = param(params, "reject_share", 0.3)
    if rate < 0 or not 0 <= reject <= 1:
        raise ConfigError("rst_storm: rate must be ≥ 0 and reject_share in [0, 1]")
    s, e = _window(ctx, start_ns, end_ns)
    v = _receiver(ctx, conns, target, "rst_storm", ("web", "app", "db", "dns"))
    out = copy_table(conns)
    c = out.cols
    served = (c["server_vm"] == v) & (c["proto"] == 6)
    hit = served & (c["start_ns"] >= s) & (c["start_ns"] < e)
    hit &= np.isin(c["outcome"], (OUTCOME_FIN, OUTCOME_OPEN, OUTCOME_RST_CLIENT, OUTCOME_RST_SERVER))
    c["outcome"][hit] = OUTCOME_RST_SERVER
    c["rounds"][hit] = 1
    c["resp_bytes"][hit] = 0
    # the service's port: its busiest, else its role's
    ports, counts = np.unique(c["sport"][served], return_counts=True)
    port = int(ports[np.argmax(counts)]) if len(ports) else ROLE_PORT.get(str(cloud.role[v]), 80)
    app = PORT_APP.get(port, APP_NONE)
    t = ctx.poisson_times(rate, s, e)
    n = len(t)
    peers = cloud.same_vpc(v)
    internet = np.full(n, cloud.role[v] == "web" or not len(peers))
    cvm = np.where(internet, -1, rng.choice(peers, n) if len(peers) else -1)
    ext = cloud.external[rng.integers(0, len(cloud.external), n)]
    client = np.where(internet, ext, cloud.ip[np.maximum(cvm, 0)])
    rtt = np.where(internet, ctx.external_rtt_ns(ext), ctx.vm_rtt_ns(np.maximum(cvm, 0), np.full(n, v)))
    refused = rng.random(n) < reject
    added = ConnTable.make(
        n, start_ns=t, client=client, server=cloud.ip[v], cport=ctx.ephemeral_ports(n), sport=port,
        vni=cloud.vni[v], client_vm=cvm, server_vm=v, rtt_ns=rtt, mss=1398 if cloud.overlay else 1448,
        req_bytes=rng.integers(80, 600, n), resp_bytes=0, syn_retries=0,
        outcome=np.where(refused, OUTCOME_REJECT, OUTCOME_RST_SERVER), app=app,
    )  # fmt: skip
    detail = f"port={port}; reset={int(hit.sum())}; added={n}; refused={int(refused.sum())}"
    return concat([out, added]), [_vm_label(ctx, "rst_storm", v, s, e, detail)]


@fault("silent_server")
def silent_server(ctx: SimContext, conns: ConnTable, target: str, start_ns: int, end_ns: int,
                  params: dict[str, Any]) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """A black hole for one low-volume client: the client VM ``target`` keeps trying one server whose SYNs go
    unanswered (retried after 1 s and 2 s), and its other traffic to that server is dropped in the window.

    Labelled on the client (scope_type ``vm``), so a client however quiet shows the symptom. Params: ``server``
    (a VM name or an IPv4 address; default a random internet host), ``port`` (443), ``rate`` (0.2 new
    connections/s: an application retrying every few seconds), ``syn_retries`` (2).
    """
    cloud, rng = ctx.cloud, ctx.rng
    params = _params("silent_server", params, ("server", "port", "rate", "syn_retries"))
    client = cloud.index(target) if target in cloud.name else -1
    if client < 0:
        raise ConfigError(f"silent_server: target must be a VM name (the client), not {target!r}")
    s, e = _window(ctx, start_ns, end_ns)
    srv, svm = str(params.get("server", "")), -1
    if srv in cloud.name:
        svm = cloud.index(srv)
        ip = int(cloud.ip[svm])
    elif srv:
        try:
            ip = int(ipaddress.IPv4Address(srv))
        except ValueError:
            raise ConfigError(f"silent_server: server={srv!r} is neither a VM name nor an IPv4 address") from None
    else:
        ip = int(cloud.external[rng.integers(10 if len(cloud.external) > 12 else 0, len(cloud.external))])
    port = param(params, "port", 443, int)
    rate = param(params, "rate", 0.2)
    retries = param(params, "syn_retries", 2, int)
    if not 1 <= port <= 65535 or rate <= 0 or not 0 <= retries <= tg.MAX_RETRIES:
        raise ConfigError(f"silent_server: port in 1..65535, rate > 0, syn_retries in 0..{tg.MAX_RETRIES}")
    t = ctx.poisson_times(rate, s, e)
    t = np.sort(np.append(t, s + int(rng.random() * min(S, e - s))))  # at least one try
    n = len(t)
    rtt = ctx.vm_rtt_ns(np.full(n, client), np.full(n, svm)) if svm >= 0 else ctx.external_rtt_ns(np.full(n, ip))
    added = ConnTable.make(
        n, start_ns=t, client=cloud.ip[client], server=ip, cport=ctx.ephemeral_ports(n), sport=port,
        vni=cloud.vni[client], client_vm=client, server_vm=svm, rtt_ns=rtt, mss=1398 if cloud.overlay else 1448,
        outcome=OUTCOME_NO_ANSWER, syn_retries=retries, app=PORT_APP.get(port, APP_NONE),
    )  # fmt: skip
    out = copy_table(conns)
    hit = (out["client"] == cloud.ip[client]) & (out["server"] == ip) & active_mask(out, s, e)
    set_loss(out, hit, 1.0, s, e)
    detail = f"server={ipaddress.IPv4Address(ip)}:{port}; attempts={n}; dropped={int(hit.sum())}"
    return concat([out, added]), [_vm_label(ctx, "silent_server", client, s, e, detail)]


# ---------------------------------------------------------------- gateway configuration changes

CONFIG_ACTIONS = ("route_withdrawn", "filter_pushed")
MIN_CUT_CONNECTIONS = 3
"""A VM of a cut-off subnet shows the cut when at least this many of its connections across it start in the window;
the label's ``vms=`` lists those VMs' addresses (a VM whose traffic stays inside the cloud has nothing to show)."""
CONFIG_ANSWERS = ("silent", "icmp")


def _address(ip: int) -> str:
    return str(ipaddress.IPv4Address(ip))


def resolve_subnet(ctx: SimContext, target: str) -> np.ndarray:
    """``tenant/subnet`` or a VM name → the indices of the subnet's VMs (ConfigError when unknown or ambiguous)."""
    cloud = ctx.cloud
    if target in cloud.name:
        return cloud.subnet_members(cloud.index(target))
    tenant, sep, name = target.partition("/")
    found = sorted({(cloud.vpc[i], cloud.subnet[i]) for i in range(len(cloud))
                    if sep and cloud.tenant[i] == tenant and cloud.subnet[i] == name})  # fmt: skip
    if len(found) != 1:
        why = "is in several VPCs of the tenant; name one of its VMs" if found else "names no subnet"
        raise ConfigError(f"config_change target {target!r} {why} (expected tenant/subnet or a VM name)")
    first = next(i for i in range(len(cloud)) if (cloud.vpc[i], cloud.subnet[i]) == found[0])
    return cloud.subnet_members(first)


@fault("config_change")
def config_change(ctx: SimContext, conns: ConnTable, target: str, start_ns: int, end_ns: int,
                  params: dict[str, Any]) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """A route to one subnet withdrawn, or a filter pushed, on the gateway for the window: the subnet's internet
    traffic is dropped there; with ``answer: icmp`` its VMs' new connections are refused by their router at once."""
    cloud = ctx.cloud
    params = _params("config_change", params, ("action", "answer", "min_conns", "probes"))
    action = param(params, "action", "route_withdrawn", str)
    answer = param(params, "answer", "silent", str)
    min_conns = param(params, "min_conns", 6, int)
    probes = param(params, "probes", 8, int)
    if action not in CONFIG_ACTIONS or answer not in CONFIG_ANSWERS:
        raise ConfigError(f"config_change: action must be one of {', '.join(CONFIG_ACTIONS)} and answer one of "
                          f"{', '.join(CONFIG_ANSWERS)}; got {action!r}, {answer!r}")  # fmt: skip
    members = resolve_subnet(ctx, target)
    s, e = _window(ctx, start_ns, end_ns)

    def crossing(t: ConnTable) -> np.ndarray:
        cvm, svm = t["client_vm"], t["server_vm"]
        return (np.isin(cvm, members) & (svm < 0)) | (np.isin(svm, members) & (cvm < 0))

    fresh = crossing(conns) & (conns["start_ns"] >= s - S) & (conns["start_ns"] < e)
    added = ConnTable()
    if int(fresh.sum()) < min_conns and probes > 0:  # from a stream of its own: the rest of the world stays as it was
        rng = ctx.stream(f"config_change:{target}:{s}")
        added = _probe_conns(ctx, rng.choice(members, probes), np.full(probes, -1), s, e, rng)
    out = concat([copy_table(conns), added])
    hit = crossing(out) & active_mask(out, s, e)
    set_loss(out, hit, 1.0, s, e)
    refused = 0
    if answer == "icmp":
        c = out.cols
        new = hit & np.isin(c["client_vm"], members) & (c["proto"] == 6) & (c["start_ns"] >= s) & (c["start_ns"] < e)
        c["outcome"][new] = OUTCOME_NET_UNREACHABLE if action == "route_withdrawn" else OUTCOME_ADMIN_PROHIBITED
        c["syn_retries"][new] = 0
        refused = int(new.sum())
    i = int(members[0])
    tried = hit & (out["start_ns"] >= s) & (out["start_ns"] < e)  # surely sending in the window (idle ones may not)
    ends = np.concatenate([out["client_vm"][tried], out["server_vm"][tried]])
    per_vm = np.bincount(ends[ends >= 0], minlength=len(cloud))[members]
    shows = [_address(int(cloud.ip[v])) for v in members[per_vm >= MIN_CUT_CONNECTIONS]]
    detail = (f"host=gateway; subnet={cloud.subnet_net(i)}; action={action}; answer={answer}; "
              f"connections={int(hit.sum())}; refused={refused}; added={len(added)}; "
              f"vms={','.join(shows)}")  # fmt: skip
    label = Label(kind="fault", scenario="config_change", scope_type="link", scope="gateway", start_ns=s, end_ns=e,
                  tenant=cloud.tenant[i], vm="", vni=int(cloud.vni[i]), detail=detail)  # fmt: skip
    return out, [label]
