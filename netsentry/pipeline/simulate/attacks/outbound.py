"""What a compromised VM sends out: C2 beacons, exfiltration, a DNS tunnel, a crypto miner's pool channel."""

from __future__ import annotations

from dataclasses import dataclass
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
    APP_SSH,
    APP_STRATUM,
    APP_TLS,
    OUTCOME_OPEN,
    ConnTable,
    concat,
)
from netsentry.pipeline.simulate.dns_payloads import (
    APP_DNS_DNSCAT2,
    APP_DNS_DNSTT,
    APP_DNS_IODINE,
    APP_DNS_IODINE_PRIVATE,
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
    return conns, [compromise_label(ctx, vm, "c2_beacon", int(t[0]) if n else s, e, detail)]


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


@dataclass(frozen=True)
class TunnelTool:
    """How one DNS tunnel tool talks (defaults from the tools' sources and captures of them)."""

    apps: tuple[int, ...]  # payload style per session (iodine: NULL, or PRIVATE with -T PRIVATE)
    rate: tuple[float, float]  # queries/s while data flows: a session's rate is drawn from this range
    poll_s: float  # idle polling period between bursts
    name: tuple[int, int]  # dotted name length of a data-carrying query
    answer: tuple[int, int]  # data bytes in a busy answer
    opt: bool  # EDNS0 OPT record in every query (asks for answers over 512 bytes)
    route: str  # relay: through a resolver (the VPC's dns VM, else a public one); direct: to the tunnel server


TUNNEL_TOOLS: dict[str, TunnelTool] = {
    "iodine": TunnelTool((APP_DNS_IODINE, APP_DNS_IODINE_PRIVATE), (10.0, 50.0), 4.0, (100, 250), (200, 1100), True,
                         "relay"),
    "dnscat2": TunnelTool((APP_DNS_DNSCAT2,), (2.0, 10.0), 1.0, (60, 250), (40, 230), False, "direct"),
    "dnstt": TunnelTool((APP_DNS_DNSTT,), (5.0, 30.0), 2.0, (120, 250), (100, 1100), True, "relay"),
}  # fmt: skip
IDLE_NAME = (60, 100)  # a poll still carries the session id and a sequence number: 60–100 characters
IDLE_ANSWER = (16, 60)
BURST_S, IDLE_S = 10.0, 20.0  # mean length of a transfer burst and of the idle stretch after it (exponential)


def _tunnel_times(ctx: SimContext, s: int, e: int, rate: float, poll_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Query times of a session on [s, e): Poisson bursts at ``rate`` alternating with polls every ``poll_s``
    (±10 %); and which queries are in a burst."""
    rng = ctx.rng
    m = int((e - s) / (S * min(BURST_S, IDLE_S))) + 2
    durs = rng.exponential(1.0, 2 * m) * np.tile([BURST_S, IDLE_S], m) * S
    edges = np.minimum(s + rng.random() * S + np.concatenate([[0.0], np.cumsum(durs)]), e).astype(np.int64)
    times, busy = [], []
    for k in range(2 * m):
        a, b = int(edges[k]), int(edges[k + 1])
        if a >= b:
            break
        if k % 2 == 0:
            t = np.sort(a + (rng.random(rng.poisson(rate * (b - a) / S)) * (b - a)).astype(np.int64))
        else:
            gaps = poll_s * S * (0.9 + 0.2 * rng.random(int((b - a) / (poll_s * S * 0.9)) + 1))
            t = (a + np.cumsum(gaps)).astype(np.int64)
            t = t[t < b]
        times.append(t)
        busy.append(np.full(len(t), k % 2 == 0))
    return np.concatenate(times), np.concatenate(busy)


def _tunnel_sizes(ctx: SimContext, tool: TunnelTool, busy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Query and answer datagram sizes: a question (name, type, class) plus the EDNS0 OPT; the answer echoes a
    question of up to 60 characters and carries the data."""
    n = len(busy)
    name = np.where(busy, uniform_ints(ctx, tool.name[0], tool.name[1] + 1, n),
                    uniform_ints(ctx, IDLE_NAME[0], IDLE_NAME[1] + 1, n))  # fmt: skip
    data = np.where(busy, uniform_ints(ctx, tool.answer[0], tool.answer[1] + 1, n),
                    uniform_ints(ctx, IDLE_ANSWER[0], IDLE_ANSWER[1] + 1, n))  # fmt: skip
    opt = 11 if tool.opt else 0
    return name + 2 + 16 + opt, 12 + 62 + 4 + opt + 12 + data


@compromise("dns_tunnel")
def dns_tunnel(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
               ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """Data smuggled in DNS as the real tools do: one UDP socket, long ever-new names under one domain, data-carrying
    record types, bursts of queries between idle polls.

    Params: ``tool`` (``iodine``: NULL or PRIVATE records, base128 names, via the resolver; ``dnscat2``:
    ``dnscat.<hex>`` names, TXT/CNAME/MX, straight to its server; ``dnstt``: base32 names, TXT, via the resolver;
    default one at random, see :data:`TUNNEL_TOOLS`), ``qtype`` (iodine: NULL or PRIVATE, default at random),
    ``rate`` (queries/s in a burst; default drawn from the tool's range), ``poll_s`` (idle polling period),
    ``sockets`` (1: source ports the session uses), ``route`` (``relay`` or ``direct``; the tool's default),
    ``resolver`` (a VM name or IPv4 for ``relay``; default the VPC's ``dns`` VM, else a public resolver),
    ``forward`` (true: a ``dns`` VM recurses for every new name, as for benign cache misses), ``server``
    (``internet``, or ``vm``: this VM is the tunnel's server, answering queries an internet resolver relays to it).
    """
    reject_unknown_params(params, "dns_tunnel", ("tool", "qtype", "rate", "poll_s", "sockets", "route", "resolver",
                                                 "forward", "server"))  # fmt: skip
    s, e = clip_to_scenario(ctx, start_ns, end_ns)
    rng = ctx.rng
    name = str(params["tool"]) if "tool" in params else str(rng.choice(sorted(TUNNEL_TOOLS)))
    if name not in TUNNEL_TOOLS:
        raise ConfigError(f"event parameter tool={name!r}: expected one of {', '.join(sorted(TUNNEL_TOOLS))}")
    tool = TUNNEL_TOOLS[name]
    app = _tunnel_app(ctx, tool, params)
    rate = positive("rate", param(params, "rate", tool.rate[0] + (tool.rate[1] - tool.rate[0]) * rng.random()))
    t, busy = _tunnel_times(ctx, s, e, rate, positive("poll_s", param(params, "poll_s", tool.poll_s)))
    req, resp = _tunnel_sizes(ctx, tool, busy)
    server = str(params.get("server", "internet"))
    if server not in ("internet", "vm"):
        raise ConfigError(f"event parameter server={server!r}: expected internet or vm")
    if server == "vm":
        conns, detail = _tunnel_to_vm(ctx, vm, t, req, resp, app, params)
    else:
        conns, detail = _tunnel_from_vm(ctx, vm, t, req, resp, app, tool, params)
    detail = f"tool={name} rate={rate:.3g}/s queries={len(t)} " + detail
    return conns, [compromise_label(ctx, vm, "dns_tunnel", s, e, detail)]


def _tunnel_app(ctx: SimContext, tool: TunnelTool, params: dict[str, Any]) -> int:
    """The session's payload style; iodine's record type from ``qtype``."""
    if "qtype" not in params or len(tool.apps) == 1:
        return int(tool.apps[int(ctx.rng.integers(len(tool.apps)))])
    qtype = str(params["qtype"]).upper()
    if qtype not in ("NULL", "PRIVATE"):
        raise ConfigError(f"event parameter qtype={params['qtype']!r}: expected NULL or PRIVATE")
    return APP_DNS_IODINE if qtype == "NULL" else APP_DNS_IODINE_PRIVATE


def _session_ports(ctx: SimContext, n: int, params: dict[str, Any]) -> np.ndarray:
    """The client's source port per query: one socket (or ``sockets`` of them, used in turn) for the session."""
    k = max(1, int(param(params, "sockets", 1, int)))
    return ctx.ephemeral_ports(k)[np.arange(n) % k]


def _tunnel_from_vm(ctx: SimContext, vm: int, t: np.ndarray, req: np.ndarray, resp: np.ndarray, app: int,
                    tool: TunnelTool, params: dict[str, Any]) -> tuple[ConnTable, str]:  # fmt: skip
    """The VM is the tunnel's client: to a resolver (which may relay upstream) or straight to the server."""
    c, rng, n = ctx.cloud, ctx.rng, len(t)
    route = str(params.get("route", tool.route))
    if route not in ("relay", "direct"):
        raise ConfigError(f"event parameter route={route!r}: expected relay or direct")
    if route == "direct":
        ip, rvm = pick_target(ctx, vm, {}, prefer_vm=False)
    elif "resolver" in params:
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
    rtt = rtt_ns_to(ctx, vm, np.full(n, rvm), np.full(n, ip, np.uint32))
    pub = public_resolvers(ctx)
    up = pub[rng.integers(0, len(pub), size=n)]
    up_rtt = ctx.external_rtt_ns(up)
    # the tunnel server is an internet round trip away (unless queried directly: it answers at once)
    auth_ns = uniform_ints(ctx, 15 * MS, 120 * MS, n) if route == "relay" else uniform_ints(ctx, 1 * MS, 5 * MS, n)
    forward = rvm >= 0 and route == "relay" and bool_param(params, "forward", True)
    server_ns = auth_ns + (20_000 + up_rtt if forward else 0)
    conns = [ConnTable.make(
        n, proto=17, start_ns=t, client=c.ip[vm], server=ip, cport=_session_ports(ctx, n, params), sport=53,
        vni=c.vni[vm], client_vm=vm, server_vm=rvm, rtt_ns=rtt, rounds=1, req_bytes=req, resp_bytes=resp,
        server_ns=server_ns, syn_retries=0, app=app,
    )]  # fmt: skip
    if forward:  # a recursive resolver asks from a fresh random port for every query (RFC 5452)
        conns.append(ConnTable.make(
            n, proto=17, start_ns=t + rtt // 2 + 20_000, client=ip, server=up, cport=ctx.ephemeral_ports(n), sport=53,
            vni=c.vni[rvm], client_vm=rvm, server_vm=-1, rtt_ns=up_rtt, rounds=1, req_bytes=req, resp_bytes=resp,
            server_ns=auth_ns, syn_retries=0, app=app,
        ))  # fmt: skip
    return concat(conns), f"{route}={ipv4_text(ip)}" + (" forwarded" if forward else "")


def _tunnel_to_vm(ctx: SimContext, vm: int, t: np.ndarray, req: np.ndarray, resp: np.ndarray, app: int,
                  params: dict[str, Any]) -> tuple[ConnTable, str]:  # fmt: skip
    """The VM is the tunnel's server: an internet resolver relays the client's queries to it; it answers them."""
    c, n = ctx.cloud, len(t)
    ip, _ = pick_target(ctx, vm, {}, prefer_vm=False)
    conns = ConnTable.make(
        n, proto=17, start_ns=t, client=ip, server=c.ip[vm], cport=ctx.ephemeral_ports(n), sport=53, vni=c.vni[vm],
        client_vm=-1, server_vm=vm, rtt_ns=ctx.external_rtt_ns(np.full(n, ip, np.uint32)), rounds=1, req_bytes=req,
        resp_bytes=resp, server_ns=uniform_ints(ctx, 100_000, 2 * MS, n), syn_retries=0, app=app,
    )  # fmt: skip
    return conns, f"server=vm resolver={ipv4_text(ip)}"


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
