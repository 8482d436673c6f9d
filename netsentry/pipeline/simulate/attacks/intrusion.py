"""Break-in attempts: SSH password guessing and lateral movement across the VPC's admin ports."""

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
    internet_hosts,
    ipv4_text,
    paced_times,
    pick_target,
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


@compromise("ssh_bruteforce")
def ssh_bruteforce(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
                   ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """Password guessing over SSH: many short connections to port 22, each a few auth attempts.

    Params: ``role`` (``attacker``: the VM guesses at ``target`` / a random internet host;
    ``victim``: ``sources`` (1) internet hosts guess at the VM), ``rate`` (2 connections/s, Poisson;
    or exactly ``connections`` spread over the window), ``pacing`` (``poisson``, or ``sequential``: one
    connection after another at ``rate``, each up to 30 % of a gap late, as a single-threaded guessing tool),
    ``attempts`` (3 password tries a connection), ``rst_fraction`` (0.3 of connections the server aborts with
    RST, else FIN).
    """
    known = ("role", "target", "sources", "rate", "connections", "attempts", "rst_fraction", "pacing")
    reject_unknown_params(params, "ssh_bruteforce", known)
    s, e = clip_to_scenario(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    role = str(params.get("role", "attacker"))
    if role not in ("attacker", "victim"):
        raise ConfigError(f"event parameter role={role!r}: expected attacker or victim")
    if "connections" in params:
        n = int(param(params, "connections", 0, int))
        t = np.sort(s + (rng.random(max(n, 0)) * (e - s)).astype(np.int64))
    elif str(params.get("pacing", "poisson")) == "sequential":
        rate = positive("rate", param(params, "rate", 2.0))
        t = paced_times(ctx, int(rate * (e - s) / S) + 1, rate, s, e, jitter=0.3)
    elif str(params.get("pacing", "poisson")) == "poisson":
        t = ctx.poisson_times(positive("rate", param(params, "rate", 2.0)), s, e)
    else:
        raise ConfigError(f"event parameter pacing={params.get('pacing')!r}: expected poisson or sequential")
    n = len(t)
    attempts = max(1, int(param(params, "attempts", 3, int)))
    rst = fraction("rst_fraction", param(params, "rst_fraction", 0.3))
    if role == "attacker":
        ip, tvm = pick_target(ctx, vm, params, prefer_vm=False)
        client, server, client_vm, server_vm = c.ip[vm], np.full(n, ip, np.uint32), vm, np.full(n, tvm)
        rtt, peer = rtt_ns_to(ctx, vm, server_vm, server), ipv4_text(ip)
    else:
        src = internet_hosts(ctx, max(1, int(param(params, "sources", 1, int))))
        client = src[rng.integers(0, len(src), size=n)]
        server, client_vm, server_vm = c.ip[vm], -1, vm
        rtt, peer = ctx.external_rtt_ns(client), ",".join(ipv4_text(x) for x in src[:4])
    # Banner + key exchange (2 rounds) and the password tries; sshd answers failures after a delay.
    conns = ConnTable.make(
        n, start_ns=t, client=client, server=server, cport=ctx.ephemeral_ports(n), sport=22, vni=c.vni[vm],
        client_vm=client_vm, server_vm=server_vm, rtt_ns=rtt, mss=vm_mss(ctx), rounds=2 + attempts,
        req_bytes=uniform_ints(ctx, 90, 700, n), resp_bytes=uniform_ints(ctx, 60, 1100, n),
        think_ns=uniform_ints(ctx, 20 * MS, 300 * MS, n), server_ns=uniform_ints(ctx, 5 * MS, 60 * MS, n),
        outcome=np.where(rng.random(n) < rst, OUTCOME_RST_SERVER, OUTCOME_FIN), app=APP_SSH,
    )  # fmt: skip
    return conns, [compromise_label(ctx, vm, "ssh_bruteforce", s, e, f"role={role} peer={peer} connections={n}")]


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
