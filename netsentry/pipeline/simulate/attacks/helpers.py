"""Shared pieces of the compromise behaviours: parameter checks, targets, round trips, pacing and labels.

Draws come from ``ctx.rng`` in the order the behaviours call these helpers.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import numpy as np

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.simulate.conns import (
    OUTCOME_NO_ANSWER,
    OUTCOME_OPEN_RST,
    OUTCOME_REJECT,
    ConnTable,
)
from netsentry.pipeline.simulate.events import MS, Label, S, SimContext, param

SERVICE_PORTS: dict[str, tuple[int, ...]] = {
    "web": (22, 80, 443),
    "app": (22, 8080),
    "db": (22, 873, 3306, 5432),
    "dns": (22, 53),
    "batch": (22,),
    "admin": (22,),
}
"""TCP ports a VM of each role listens on (what a scan finds open); anything else is closed."""


def bool_param(params: dict[str, Any], name: str, default: bool) -> bool:
    """A boolean parameter (YAML booleans, or the words true/false/yes/no/1/0)."""
    v = params.get(name, default)
    if isinstance(v, bool):
        return v
    if isinstance(v, int | str) and str(v).strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return str(v).strip().lower() in ("true", "yes", "1")
    raise ConfigError(f"event parameter {name}={v!r}: expected true or false")


def reject_unknown_params(params: dict[str, Any], behaviour: str, names: tuple[str, ...]) -> None:
    """ConfigError naming any parameter ``behaviour`` does not take (a typo would otherwise pass silently)."""
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ConfigError(f"{behaviour}: unknown event parameter(s) {', '.join(unknown)}; known: {', '.join(names)}")


def positive(name: str, value: float) -> float:
    """``value`` of parameter ``name``, or ConfigError unless it is > 0."""
    if not value > 0:
        raise ConfigError(f"event parameter {name}={value!r}: must be > 0")
    return value


def fraction(name: str, value: float) -> float:
    """``value`` of parameter ``name``, or ConfigError unless it is within [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"event parameter {name}={value!r}: must be within [0, 1]")
    return value


def port_param(params: dict[str, Any], name: str, choices: tuple[int, ...], ctx: SimContext) -> int:
    """Parameter ``name`` as a TCP/UDP port, or one of ``choices`` picked at random."""
    p = param(params, name, None, int)
    if p is None:
        return int(ctx.rng.choice(np.array(choices)))
    if not 1 <= p <= 65535:
        raise ConfigError(f"event parameter {name}={p!r}: not a port number")
    return p


def ipv4_text(ip: int) -> str:
    """A uint32 address as dotted text (for labels' details)."""
    return str(ipaddress.IPv4Address(int(ip)))


def compromise_label(ctx: SimContext, vm: int, name: str, start_ns: int, end_ns: int, detail: str) -> Label:
    """The ground-truth label of behaviour ``name`` on VM ``vm`` over [start_ns, end_ns)."""
    c = ctx.cloud
    return Label(kind="compromise", scenario=name, scope_type="vm", scope=ipv4_text(c.ip[vm]), start_ns=int(start_ns),
                 end_ns=int(end_ns), tenant=c.tenant[vm], vm=c.name[vm], vni=int(c.vni[vm]), detail=detail)  # fmt: skip


def clip_to_scenario(ctx: SimContext, start_ns: int, end_ns: int) -> tuple[int, int]:
    """The event's interval clipped to the scenario; ConfigError when nothing is left."""
    s, e = max(int(start_ns), ctx.t0), min(int(end_ns), ctx.t1)
    if e <= s:
        raise ConfigError(f"event interval [{start_ns}, {end_ns}) lies outside the scenario")
    return s, e


def internet_hosts(ctx: SimContext, n: int = 1) -> np.ndarray:
    """``n`` distinct internet hosts (uint32) for an attacker's peers: not the public resolvers, API
    endpoints or backup targets benign traffic uses (the first ten and last two, when there are enough)."""
    ext = ctx.cloud.external
    ext = ext[10:-2] if len(ext) >= 16 else ext[2:-2] if len(ext) > 4 else ext
    return ext[ctx.rng.choice(len(ext), size=min(n, len(ext)), replace=False)].astype(np.uint32)


def vpc_peers(ctx: SimContext, vm: int) -> np.ndarray:
    """Indexes of the other VMs of ``vm``'s VPC."""
    return np.asarray(ctx.cloud.same_vpc(vm), dtype=np.int64)


def pick_target(ctx: SimContext, vm: int, params: dict[str, Any], prefer_vm: bool) -> tuple[int, int]:
    """Where a one-target behaviour aims: ``(ip, vm index or -1 for an internet host)``.

    Param ``target``: a VM name or an IPv4 address (a VM of this VPC when it is one's address).
    Otherwise ``external: true`` or ``prefer_vm=False`` → a random internet host, else a random
    other VM of the VPC (an internet host when the VPC has no other VM).
    """
    c = ctx.cloud
    t = params.get("target")
    if t is not None:
        t = str(t)
        if t in c.name:
            j = c.index(t)
            if c.vpc[j] != c.vpc[vm]:
                raise ConfigError(f"event parameter target={t!r}: VM is not in {c.name[vm]}'s VPC ({c.vpc[vm]})")
            return int(c.ip[j]), j
        try:
            ip = int(ipaddress.IPv4Address(t))
        except ValueError:
            raise ConfigError(f"event parameter target={t!r}: neither a VM name nor an IPv4 address") from None
        peers = vpc_peers(ctx, vm)
        hit = peers[c.ip[peers] == ip] if len(peers) else peers
        return ip, (int(hit[0]) if len(hit) else -1)
    if prefer_vm and not bool_param(params, "external", False):
        peers = vpc_peers(ctx, vm)
        if len(peers):
            j = int(ctx.rng.choice(peers))
            return int(c.ip[j]), j
    return int(internet_hosts(ctx)[0]), -1


def rtt_ns_to(ctx: SimContext, vm: int, server_vm: np.ndarray, server_ip: np.ndarray) -> np.ndarray:
    """RTT from VM ``vm`` to each server (a VM when ``server_vm >= 0``, else an internet host)."""
    server_vm = np.asarray(server_vm, dtype=np.int64)
    internal = server_vm >= 0
    a = np.full(len(server_vm), vm, dtype=np.int64)
    rv = ctx.vm_rtt_ns(a, np.where(internal, server_vm, vm))
    re = ctx.external_rtt_ns(np.asarray(server_ip, dtype=np.uint32))
    return np.where(internal, rv, re).astype(np.int64)


def paced_times(ctx: SimContext, n: int, rate: float, start_ns: int, end_ns: int, jitter: float = 0.3) -> np.ndarray:
    """Up to ``n`` send times at a steady ``rate`` per second from ``start_ns`` (a tool's pacing),
    each late by up to ``jitter`` of the gap; as many as fit before ``end_ns``."""
    gap = S / rate
    n = int(min(n, max(1, np.ceil((end_ns - start_ns) / gap - jitter))))
    t = start_ns + np.arange(n) * gap + ctx.rng.random(n) * jitter * gap
    return np.minimum(t.astype(np.int64), end_ns - 1)


def finished_by(conns: ConnTable, end_ns: int) -> int:
    """When the last of ``conns`` is roughly over (handshake, rounds, SYN back-off), clipped to ``end_ns``."""
    if not len(conns):
        return end_ns
    rtt, rounds = conns["rtt_ns"], conns["rounds"].astype(np.int64)
    body = rtt * (2 + rounds) + rounds * (conns["server_ns"] + conns["think_ns"])
    unanswered = conns["outcome"] == OUTCOME_NO_ANSWER
    backoff = ((1 << conns["syn_retries"].astype(np.int64)) - 1) * S + MS
    short = np.isin(conns["outcome"], (OUTCOME_REJECT, OUTCOME_OPEN_RST))
    dur = np.where(unanswered, backoff, np.where(short, 2 * rtt + MS, body))
    return int(min(end_ns, int((conns["start_ns"] + dur).max())))


def vm_mss(ctx: SimContext) -> int:
    """A VM's TCP MSS (as benign traffic's): 1398 inside a VXLAN overlay, else 1448."""
    return 1398 if ctx.cloud.overlay else 1448


def public_resolvers(ctx: SimContext) -> np.ndarray:
    """The public resolvers VMs without a ``dns`` VM use (as in :mod:`benign`: the first two internet hosts)."""
    return ctx.cloud.external[:2]


def uniform_ints(ctx: SimContext, lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` integers uniform in [lo, hi)."""
    return ctx.rng.integers(int(lo), int(hi), size=n, dtype=np.int64)
