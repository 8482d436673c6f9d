"""Floods: SYN (the VM as attacker or spoofed victim) and outbound UDP."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.simulate.attacks.helpers import (
    clip_to_scenario,
    compromise_label,
    finished_by,
    ipv4_text,
    paced_times,
    pick_target,
    port_param,
    positive,
    reject_unknown_params,
)
from netsentry.pipeline.simulate.conns import (
    APP_DNS,
    APP_NONE,
    OUTCOME_NO_ANSWER,
    OUTCOME_OPEN_RST,
    ConnTable,
)
from netsentry.pipeline.simulate.events import Label, SimContext, compromise, param

QUIET_UDP_PORTS = (38000, 46000)
"""UDP ports (inclusive) no Wireshark dissector claims (checked with tshark 4.0 on 512 opaque bytes over
every port pair): a flood's opaque datagrams between them read cleanly. Elsewhere some 50 ports
(1153, 2157, 3544, 5246, 9899, …) have dissectors that report such payloads as malformed."""


def _flood_times(ctx: SimContext, params: dict[str, Any], s: int, e: int) -> np.ndarray:
    rate = positive("rate", param(params, "rate", 2000.0))
    cap = max(1, int(param(params, "max_packets", 200_000, int)))
    return paced_times(ctx, cap, rate, s, e, jitter=0.9)


@compromise("ddos_syn")
def ddos_syn(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
             ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """SYN flood: SYNs (never retransmitted) from random source ports.

    Params: ``role`` (``attacker``: the VM floods ``target`` / a random internet host; ``victim``: the VM is
    flooded), ``rate`` (2000 SYNs/s), ``max_packets`` (200000: the flood stops early past it), ``port`` (80 or 443
    at random), ``target`` (attacker only), ``sources`` (victim only: ``spoofed``, the default, random public
    addresses, one SYN each mostly, unanswered; or N, that many real internet hosts flooding without spoofing, as
    ``hping3 -S`` does: the victim's open port answers every SYN and each source's kernel, which opened no
    connection, resets the SYN/ACK).
    """
    reject_unknown_params(params, "ddos_syn", ("role", "rate", "max_packets", "port", "target", "sources"))
    s, e = clip_to_scenario(ctx, start_ns, end_ns)
    role = str(params.get("role", "attacker"))
    if role not in ("attacker", "victim"):
        raise ConfigError(f"event parameter role={role!r}: expected attacker or victim")
    sources = params.get("sources", "spoofed")
    if sources != "spoofed":  # a later variant: its own stream, so the rest of the world stays as it was
        if role != "victim":
            raise ConfigError("ddos_syn: sources applies to role=victim only")
        ctx = replace(ctx, rng=ctx.stream(f"ddos_syn:{vm}:{s}"))
    c, rng = ctx.cloud, ctx.rng
    port = port_param(params, "port", (80, 443), ctx)
    t = _flood_times(ctx, params, s, e)
    n = len(t)
    if role == "attacker":
        ip, _ = pick_target(ctx, vm, params, prefer_vm=False)
        client, server, client_vm, server_vm = c.ip[vm], np.full(n, ip, np.uint32), vm, -1
        rtt, who = ctx.external_rtt_ns(server), f"target={ipv4_text(ip)}:{port}"
        outcome = OUTCOME_NO_ANSWER
    else:
        if sources == "spoofed":
            client, outcome = _spoofed_sources(rng, n), OUTCOME_NO_ANSWER
        else:
            k = param(params, "sources", 1, int)
            if k < 1:
                raise ConfigError(f"ddos_syn: sources={sources!r}: expected spoofed or a number of hosts >= 1")
            real = c.external[rng.choice(len(c.external), size=min(k, len(c.external)), replace=False)]
            client, outcome = real[rng.integers(0, len(real), size=n)], OUTCOME_OPEN_RST
        server, client_vm, server_vm = np.full(n, c.ip[vm], np.uint32), -1, vm
        rtt, who = ctx.external_rtt_ns(client), f"role=victim port={port} sources={len(np.unique(client))}"
    conns = ConnTable.make(
        n, start_ns=t, client=client, server=server, cport=rng.integers(1024, 65536, size=n), sport=port,
        vni=c.vni[vm], client_vm=client_vm, server_vm=server_vm, rtt_ns=rtt, mss=1460,
        rounds=0, req_bytes=0, resp_bytes=0, outcome=outcome, syn_retries=0,
    )  # fmt: skip
    detail = f"{who} syns={n}"
    return conns, [compromise_label(ctx, vm, "ddos_syn", s, finished_by(conns, e), detail)]


def _spoofed_sources(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random unicast addresses in 23.0.0.0–222.255.255.255 (spoofed flood sources; may repeat)."""
    ip = rng.integers(23 << 24, 223 << 24, size=n, dtype=np.int64)
    ip = np.where((ip & 0xFF) == 0, ip + 1, ip)
    return np.where((ip & 0xFF) == 255, ip - 1, ip).astype(np.uint32)


@compromise("ddos_udp")
def ddos_udp(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
             ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """Outbound UDP flood: unanswered datagrams from random source ports to one internet host.

    Params: ``rate`` (2000 datagrams/s), ``max_packets`` (200000), ``port`` (``random``: each
    datagram to a random port of :data:`QUIET_UDP_PORTS`; or a number, e.g. 53 or 123), ``payload``
    (512 bytes), ``target`` (a random internet host). Source ports are random in the same range.
    """
    reject_unknown_params(params, "ddos_udp", ("rate", "max_packets", "port", "payload", "target"))
    s, e = clip_to_scenario(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    p = params.get("port", "random")
    ip, _ = pick_target(ctx, vm, params, prefer_vm=False)
    t = _flood_times(ctx, params, s, e)
    n = len(t)
    fixed = None if str(p) == "random" else port_param({"port": p}, "port", (), ctx)
    lo, hi = QUIET_UDP_PORTS
    dport = rng.integers(lo, hi + 1, size=n) if fixed is None else np.full(n, fixed)
    payload = max(1, int(param(params, "payload", 512, int)))
    app = np.where(dport == 53, APP_DNS, APP_NONE)
    conns = ConnTable.make(
        n, proto=17, start_ns=t, client=c.ip[vm], server=ip, cport=rng.integers(lo, hi + 1, size=n), sport=dport,
        vni=c.vni[vm], client_vm=vm, server_vm=-1, rtt_ns=ctx.external_rtt_ns(np.full(n, ip, np.uint32)), rounds=1,
        req_bytes=payload, resp_bytes=0, app=app,
    )  # fmt: skip
    detail = f"target={ipv4_text(ip)} port={p} datagrams={n} payload={payload}"
    return conns, [compromise_label(ctx, vm, "ddos_udp", s, finished_by(conns, e), detail)]
