"""What a compromised VM sends out: C2 beacons, exfiltration, a DNS tunnel, a crypto miner's pool channel."""

from __future__ import annotations

from typing import Any

import numpy as np

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.simulate.attacks.helpers import (
    bool_param,
    clip_to_scenario,
    compromise_label,
    fraction,
    ipv4_text,
    pick_target,
    port_param,
    positive,
    public_resolvers,
    reject_unknown_params,
    rtt_ns_to,
    uniform_ints,
    vm_mss,
    vpc_peers,
)
from netsentry.pipeline.simulate.conns import (
    APP_DNS,
    APP_SSH,
    APP_STRATUM,
    APP_TLS,
    OUTCOME_OPEN,
    ConnTable,
    concat,
)
from netsentry.pipeline.simulate.events import MS, Label, S, SimContext, compromise, param
from netsentry.pipeline.simulate.tcpgen import WINDOW


@compromise("c2_beacon")
def c2_beacon(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
              ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """An implant calling home: one small HTTPS exchange with one internet host every period.

    Params: ``period_s`` (30), ``jitter`` (0.1: each gap uniform in period·(1 ± jitter)), ``port``
    (443), ``target`` (the C2 address; a random internet host), ``task_fraction`` (0.05 of beacons
    fetch a task: a 2–20 kB answer instead of a few hundred bytes).
    """
    reject_unknown_params(params, "c2_beacon", ("period_s", "jitter", "port", "target", "task_fraction"))
    s, e = clip_to_scenario(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    period = positive("period_s", param(params, "period_s", 30.0)) * S
    jitter = fraction("jitter", param(params, "jitter", 0.1))
    port = port_param(params, "port", (443,), ctx)
    task = fraction("task_fraction", param(params, "task_fraction", 0.05))
    ip, _ = pick_target(ctx, vm, params, prefer_vm=False)
    m = int((e - s) / (period * max(1.0 - jitter, 0.05))) + 2
    gaps = period * (1.0 + jitter * (2.0 * rng.random(m) - 1.0))
    t = (s + rng.random() * period + np.concatenate([[0.0], np.cumsum(gaps[:-1])])).astype(np.int64)
    t = t[t < e]
    n = len(t)
    resp = np.where(rng.random(n) < task, uniform_ints(ctx, 2000, 20000, n), uniform_ints(ctx, 120, 500, n))
    conns = ConnTable.make(
        n, start_ns=t, client=c.ip[vm], server=ip, cport=ctx.ephemeral_ports(n), sport=port, vni=c.vni[vm],
        client_vm=vm, server_vm=-1, rtt_ns=ctx.external_rtt_ns(np.full(n, ip, np.uint32)), mss=vm_mss(ctx), rounds=1,
        req_bytes=uniform_ints(ctx, 200, 600, n), resp_bytes=resp, server_ns=uniform_ints(ctx, 2 * MS, 30 * MS, n),
        app=APP_TLS,
    )  # fmt: skip
    detail = f"c2={ipv4_text(ip)}:{port} period_s={period / S:g} jitter={jitter:g} beacons={n}"
    return conns, [compromise_label(ctx, vm, "c2_beacon", s, e, detail)]


@compromise("exfiltration")
def exfiltration(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
                 ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """Large uploads from the VM to one internet host, staggered over the window.

    Params: ``total_mb`` (200, MB = 10^6 bytes, split unevenly; each upload is trimmed to what a
    64 KiB window per round trip moves before the window ends), ``connections`` (4), ``port``
    (443 or 22 at random; 22 is SSH/scp, else TLS), ``chunk_mb`` (16: bytes sent per round before
    the server's small acknowledgement), ``target`` (a random internet host).
    """
    reject_unknown_params(params, "exfiltration", ("total_mb", "connections", "port", "chunk_mb", "target"))
    s, e = clip_to_scenario(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    total = int(positive("total_mb", param(params, "total_mb", 200.0)) * 1e6)
    k = max(1, int(param(params, "connections", 4, int)))
    port = port_param(params, "port", (443, 22), ctx)
    chunk = int(positive("chunk_mb", param(params, "chunk_mb", 16.0)) * 1e6)
    ip, _ = pick_target(ctx, vm, params, prefer_vm=False)
    rtt = ctx.external_rtt_ns(np.full(k, ip, np.uint32))
    # staggered over the first half of the window; each upload no larger than fits before its end
    # at one receive window per round trip (tcpgen's cap), with a margin for slow start and rounds
    t = (s + (np.arange(k) + 0.25 * rng.random(k)) * ((e - s) / (2 * k))).astype(np.int64)
    fits = (0.85 * WINDOW * np.maximum((e - t) / rtt - 4, 0)).astype(np.int64)
    size = np.clip((rng.dirichlet(np.full(k, 4.0)) * total).astype(np.int64), 1, np.maximum(fits, 1))
    rounds = np.maximum(-(-size // chunk), 1)
    conns = ConnTable.make(
        k, start_ns=t, client=c.ip[vm], server=ip, cport=ctx.ephemeral_ports(k), sport=port, vni=c.vni[vm],
        client_vm=vm, server_vm=-1, rtt_ns=rtt, mss=vm_mss(ctx), rounds=rounds, req_bytes=-(-size // rounds),
        resp_bytes=uniform_ints(ctx, 40, 200, k), server_ns=uniform_ints(ctx, 1 * MS, 10 * MS, k),
        app=APP_SSH if port == 22 else APP_TLS,
    )  # fmt: skip
    detail = f"dest={ipv4_text(ip)}:{port} bytes={int(conns['req_bytes'] @ conns['rounds'])} connections={k}"
    # the label ends when the last upload does (one receive window per round trip), not at the window's end
    done = int(min(e, (t + rtt * (size / (0.85 * WINDOW) + 4)).max()))
    return conns, [compromise_label(ctx, vm, "exfiltration", s, done, detail)]


@compromise("dns_tunnel")
def dns_tunnel(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
               ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """Data smuggled in DNS: frequent queries with long names (and long TXT answers) via the resolver.

    Params: ``rate`` (5 queries/s, Poisson; benign VMs ask 0.1–0.5/s), ``resolver`` (a VM name or
    IPv4; default a ``dns`` VM of the VPC, else one of the public resolvers benign traffic uses).
    Queries are 150–250 bytes, answers 200–400. Every name is new, so the resolver recurses: a
    public one answers after an internet round trip; a ``dns`` VM forwards each query to a public
    resolver (``forward``, true) as benign cache misses do, and answers when the reply is back.
    """
    reject_unknown_params(params, "dns_tunnel", ("rate", "resolver", "forward"))
    s, e = clip_to_scenario(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    rate = positive("rate", param(params, "rate", 5.0))
    if "resolver" in params:
        ip, rvm = pick_target(ctx, vm, {"target": params["resolver"]}, prefer_vm=False)
    else:
        peers = vpc_peers(ctx, vm)
        dns = peers[c.role[peers] == "dns"] if len(peers) else peers
        if len(dns):
            rvm = int(dns[rng.integers(0, len(dns))])
            ip = int(c.ip[rvm])
        else:
            pub = public_resolvers(ctx)
            ip, rvm = int(pub[rng.integers(0, len(pub))]), -1
    t = ctx.poisson_times(rate, s, e)
    n = len(t)
    rtt = rtt_ns_to(ctx, vm, np.full(n, rvm), np.full(n, ip, np.uint32))
    req, resp = uniform_ints(ctx, 150, 251, n), uniform_ints(ctx, 200, 401, n)
    pub = public_resolvers(ctx)
    up = pub[rng.integers(0, len(pub), size=n)]
    up_rtt = ctx.external_rtt_ns(up)
    # the authoritative server (the attacker's) is a further internet round trip away
    auth_ns = uniform_ints(ctx, 15 * MS, 120 * MS, n)
    forward = rvm >= 0 and bool_param(params, "forward", True)
    server_ns = auth_ns + (20_000 + up_rtt if forward else 0)
    conns = [ConnTable.make(
        n, proto=17, start_ns=t, client=c.ip[vm], server=ip, cport=ctx.ephemeral_ports(n), sport=53, vni=c.vni[vm],
        client_vm=vm, server_vm=rvm, rtt_ns=rtt, rounds=1, req_bytes=req, resp_bytes=resp, server_ns=server_ns,
        syn_retries=0, app=APP_DNS,
    )]  # fmt: skip
    if forward:
        conns.append(ConnTable.make(
            n, proto=17, start_ns=t + rtt // 2 + 20_000, client=ip, server=up, cport=ctx.ephemeral_ports(n), sport=53,
            vni=c.vni[rvm], client_vm=rvm, server_vm=-1, rtt_ns=up_rtt, rounds=1, req_bytes=req + 11,
            resp_bytes=resp + 11, server_ns=auth_ns, syn_retries=0, app=APP_DNS,
        ))  # fmt: skip
    detail = f"resolver={ipv4_text(ip)} queries={n}" + (" forwarded" if forward else "")
    return concat(conns), [compromise_label(ctx, vm, "dns_tunnel", s, e, detail)]


@compromise("crypto_mining")
def crypto_mining(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
                  ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """A miner: long-lived Stratum connection(s) to an internet pool, a share submitted every 10–30 s.

    Params: ``connections`` (1), ``port`` (3333 or 4444 at random), ``target`` (the pool; a random
    internet host), ``share_s`` ([10, 30]: each connection's submission interval is drawn from it).
    Connections stay open past the window (OUTCOME_OPEN); their last round starts before its end.
    """
    reject_unknown_params(params, "crypto_mining", ("connections", "port", "target", "share_s"))
    s, e = clip_to_scenario(ctx, start_ns, end_ns)
    c = ctx.cloud
    k = max(1, int(param(params, "connections", 1, int)))
    port = port_param(params, "port", (3333, 4444), ctx)
    lo, hi = (float(x) for x in params.get("share_s", (10.0, 30.0)))
    if not 0 < lo <= hi:
        raise ConfigError(f"event parameter share_s={params.get('share_s')!r}: expected [low, high] seconds > 0")
    ip, _ = pick_target(ctx, vm, params, prefer_vm=False)
    rtt = ctx.external_rtt_ns(np.full(k, ip, np.uint32))
    t = s + uniform_ints(ctx, 0, min(2 * S, (e - s) // 2 + 1), k)
    think = (lo + (hi - lo) * ctx.rng.random(k)) * S
    server = uniform_ints(ctx, 1 * MS, 5 * MS, k)
    step = think.astype(np.int64) + rtt + server
    rounds = np.maximum(1, 1 + (e - t - rtt - server) // step)
    conns = ConnTable.make(
        k, start_ns=t, client=c.ip[vm], server=ip, cport=ctx.ephemeral_ports(k), sport=port, vni=c.vni[vm],
        client_vm=vm, server_vm=-1, rtt_ns=rtt, mss=vm_mss(ctx), rounds=rounds,
        req_bytes=uniform_ints(ctx, 150, 260, k), resp_bytes=uniform_ints(ctx, 80, 400, k), think_ns=think,
        server_ns=server, outcome=OUTCOME_OPEN, syn_retries=2, app=APP_STRATUM,
    )  # fmt: skip
    detail = f"pool={ipv4_text(ip)}:{port} connections={k} shares={int(rounds.sum())}"
    return conns, [compromise_label(ctx, vm, "crypto_mining", s, e, detail)]
