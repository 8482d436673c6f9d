"""Break-in attempts: lateral movement across the VPC's admin ports (password guessing: :mod:`bruteforce`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.simulate.attacks.helpers import (
    SERVICE_PORTS,
    clip_to_scenario,
    compromise_label,
    finished_by,
    fraction,
    positive,
    reject_unknown_params,
    rtt_ns_to,
    uniform_ints,
    vm_mss,
    vpc_peers,
)
from netsentry.pipeline.simulate.conns import (
    APP_NONE,
    APP_SSH,
    OUTCOME_FIN,
    OUTCOME_NO_ANSWER,
    OUTCOME_REJECT,
    OUTCOME_RST_SERVER,
    ConnTable,
)
from netsentry.pipeline.simulate.events import MS, Label, S, SimContext, compromise, param

ADMIN_PORTS = (22, 445, 3389, 5985)
"""SSH, SMB, RDP, WinRM: where lateral movement knocks."""


@compromise("lateral_movement")
def lateral_movement(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
                     ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """The VM tries the admin ports of the other VMs of its VPC, host after host.

    Params: ``ports`` (22, 445, 3389, 5985), ``targets`` (all other VMs of the VPC, in random
    order; a number takes that many), ``rate`` (2 attempts/s, exponential gaps), ``filtered``
    (0.3: share of targets whose security group drops the attempts; SYN retried once), ``sessions``
    (1.0: share of reachable served ports where the login succeeds and a few rounds follow; the rest
    fail authentication after 3 rounds and the server resets).
    A port the target serves (see :data:`SERVICE_PORTS`) accepts; any other rejects (RST-ACK).
    """
    reject_unknown_params(params, "lateral_movement", ("ports", "targets", "rate", "filtered", "sessions"))
    s, e = clip_to_scenario(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    ports = np.array([int(p) for p in params.get("ports", ADMIN_PORTS)], dtype=np.int64)
    if not len(ports) or ports.min() < 1 or ports.max() > 65535:
        raise ConfigError(f"event parameter ports={params.get('ports')!r}: expected a list of port numbers")
    peers = vpc_peers(ctx, vm)
    if not len(peers):
        raise ConfigError(f"lateral_movement: {c.name[vm]} has no other VM in its VPC ({c.vpc[vm]})")
    peers = rng.permutation(peers)[: max(1, int(param(params, "targets", len(peers), int)))]
    rate = positive("rate", param(params, "rate", 2.0))
    filtered = fraction("filtered", param(params, "filtered", 0.3))
    sessions = fraction("sessions", param(params, "sessions", 1.0))
    tvm = np.repeat(peers, len(ports))
    dport = np.tile(ports, len(peers))
    gaps = rng.exponential(S / rate, size=len(tvm))
    t = s + np.concatenate([[0.0], np.cumsum(gaps[:-1])]).astype(np.int64)
    keep = t < e
    tvm, dport, t = tvm[keep], dport[keep], t[keep]
    n = len(t)
    dropped = np.repeat(rng.random(len(peers)) < filtered, len(ports))[:n]
    served = np.array([[int(p) in SERVICE_PORTS.get(str(c.role[j]), ()) for p in ports] for j in peers], dtype=bool)
    serves = served.ravel()[:n]
    ok = ~dropped & serves
    login = ok & (rng.random(n) < sessions)
    outcome = np.where(dropped, OUTCOME_NO_ANSWER, np.where(login, OUTCOME_FIN,
                       np.where(ok, OUTCOME_RST_SERVER, OUTCOME_REJECT)))  # fmt: skip
    rounds = np.where(login, uniform_ints(ctx, 4, 12, n), np.where(ok, 3, 0))
    conns = ConnTable.make(
        n, start_ns=t, client=c.ip[vm], server=c.ip[tvm], cport=ctx.ephemeral_ports(n), sport=dport, vni=c.vni[vm],
        client_vm=vm, server_vm=tvm, rtt_ns=rtt_ns_to(ctx, vm, tvm, c.ip[tvm]), mss=vm_mss(ctx), rounds=rounds,
        req_bytes=uniform_ints(ctx, 100, 1500, n), resp_bytes=uniform_ints(ctx, 100, 4000, n),
        think_ns=uniform_ints(ctx, 50 * MS, 800 * MS, n), server_ns=uniform_ints(ctx, 1 * MS, 20 * MS, n),
        outcome=outcome, syn_retries=np.where(dropped, 1, 0), app=np.where(dport == 22, APP_SSH, APP_NONE),
    )  # fmt: skip
    detail = f"targets={len(np.unique(tvm))} attempts={n} sessions={int(login.sum())}"
    return conns, [compromise_label(ctx, vm, "lateral_movement", s, finished_by(conns, e), detail)]
