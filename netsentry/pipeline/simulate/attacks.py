"""Compromise behaviours: what a compromised VM (or an attacker aiming at one) adds to the traffic.

Each generator is registered with :func:`~netsentry.pipeline.simulate.events.compromise` under the name a
scenario's event ``type`` uses, and returns the connections it makes (one vectorised
:meth:`ConnTable.make` per behaviour) and one :class:`Label` for the VM over the interval it is
active. All randomness comes from ``ctx.rng``: the same seed gives the same connections.

Calibration against real traces (``../shared/data``): nmap's SYN scan of 1,000 ports of an
internet host drew 17 replies and retransmitted each unanswered probe once (1,994 SYNs in 23 s);
an SSH password guesser made 11 connections in 70 s.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import numpy as np

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.simulate.conns import (
    APP_DNS,
    APP_NONE,
    APP_SSH,
    APP_STRATUM,
    APP_TLS,
    OUTCOME_FIN,
    OUTCOME_NO_ANSWER,
    OUTCOME_OPEN,
    OUTCOME_OPEN_RST,
    OUTCOME_REJECT,
    OUTCOME_RST_SERVER,
    ConnTable,
    concat,
)
from netsentry.pipeline.simulate.events import MS, Label, S, SimContext, compromise, param
from netsentry.pipeline.simulate.tcpgen import WINDOW

SERVICE_PORTS: dict[str, tuple[int, ...]] = {
    "web": (22, 80, 443),
    "app": (22, 8080),
    "db": (22, 873, 3306, 5432),
    "dns": (22, 53),
    "batch": (22,),
    "admin": (22,),
}
"""TCP ports a VM of each role listens on (what a scan finds open); anything else is closed."""
EXTERNAL_OPEN = (22, 80, 443)
"""Ports an internet host answers on when scanned."""
ADMIN_PORTS = (22, 445, 3389, 5985)
"""SSH, SMB, RDP, WinRM: where lateral movement knocks."""
QUIET_UDP_PORTS = (38000, 46000)
"""UDP ports (inclusive) no Wireshark dissector claims (checked with tshark 4.0 on 512 opaque bytes over
every port pair): a flood's opaque datagrams between them read cleanly. Elsewhere some 50 ports
(1153, 2157, 3544, 5246, 9899, …) have dissectors that report such payloads as malformed."""

# --------------------------------------------------------------------------- helpers


def _flag(params: dict[str, Any], name: str, default: bool) -> bool:
    """A boolean parameter (YAML booleans, or the words true/false/yes/no/1/0)."""
    v = params.get(name, default)
    if isinstance(v, bool):
        return v
    if isinstance(v, int | str) and str(v).strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return str(v).strip().lower() in ("true", "yes", "1")
    raise ConfigError(f"event parameter {name}={v!r}: expected true or false")


def _known(params: dict[str, Any], behaviour: str, names: tuple[str, ...]) -> None:
    """ConfigError naming any parameter ``behaviour`` does not take (a typo would otherwise pass silently)."""
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ConfigError(f"{behaviour}: unknown event parameter(s) {', '.join(unknown)}; known: {', '.join(names)}")


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ConfigError(f"event parameter {name}={value!r}: must be > 0")
    return value


def _fraction(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"event parameter {name}={value!r}: must be within [0, 1]")
    return value


def _port(params: dict[str, Any], name: str, choices: tuple[int, ...], ctx: SimContext) -> int:
    """Parameter ``name`` as a TCP/UDP port, or one of ``choices`` picked at random."""
    p = param(params, name, None, int)
    if p is None:
        return int(ctx.rng.choice(np.array(choices)))
    if not 1 <= p <= 65535:
        raise ConfigError(f"event parameter {name}={p!r}: not a port number")
    return p


def _ip_text(ip: int) -> str:
    return str(ipaddress.IPv4Address(int(ip)))


def _label(ctx: SimContext, vm: int, name: str, start_ns: int, end_ns: int, detail: str) -> Label:
    c = ctx.cloud
    return Label(kind="compromise", scenario=name, scope_type="vm", scope=_ip_text(c.ip[vm]), start_ns=int(start_ns),
                 end_ns=int(end_ns), tenant=c.tenant[vm], vm=c.name[vm], vni=int(c.vni[vm]), detail=detail)  # fmt: skip


def _window(ctx: SimContext, start_ns: int, end_ns: int) -> tuple[int, int]:
    """The event's interval clipped to the scenario; ConfigError when nothing is left."""
    s, e = max(int(start_ns), ctx.t0), min(int(end_ns), ctx.t1)
    if e <= s:
        raise ConfigError(f"event interval [{start_ns}, {end_ns}) lies outside the scenario")
    return s, e


def _external(ctx: SimContext, n: int = 1) -> np.ndarray:
    """``n`` distinct internet hosts (uint32) for an attacker's peers: not the public resolvers, API
    endpoints or backup targets benign traffic uses (the first ten and last two, when there are enough)."""
    ext = ctx.cloud.external
    ext = ext[10:-2] if len(ext) >= 16 else ext[2:-2] if len(ext) > 4 else ext
    return ext[ctx.rng.choice(len(ext), size=min(n, len(ext)), replace=False)].astype(np.uint32)


def _vpc_vms(ctx: SimContext, vm: int) -> np.ndarray:
    return np.asarray(ctx.cloud.same_vpc(vm), dtype=np.int64)


def _target(ctx: SimContext, vm: int, params: dict[str, Any], prefer_vm: bool) -> tuple[int, int]:
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
        peers = _vpc_vms(ctx, vm)
        hit = peers[c.ip[peers] == ip] if len(peers) else peers
        return ip, (int(hit[0]) if len(hit) else -1)
    if prefer_vm and not _flag(params, "external", False):
        peers = _vpc_vms(ctx, vm)
        if len(peers):
            j = int(ctx.rng.choice(peers))
            return int(c.ip[j]), j
    return int(_external(ctx)[0]), -1


def _rtt(ctx: SimContext, vm: int, server_vm: np.ndarray, server_ip: np.ndarray) -> np.ndarray:
    """RTT from VM ``vm`` to each server (a VM when ``server_vm >= 0``, else an internet host)."""
    server_vm = np.asarray(server_vm, dtype=np.int64)
    internal = server_vm >= 0
    a = np.full(len(server_vm), vm, dtype=np.int64)
    rv = ctx.vm_rtt_ns(a, np.where(internal, server_vm, vm))
    re = ctx.external_rtt_ns(np.asarray(server_ip, dtype=np.uint32))
    return np.where(internal, rv, re).astype(np.int64)


def _paced(ctx: SimContext, n: int, rate: float, start_ns: int, end_ns: int, jitter: float = 0.3) -> np.ndarray:
    """Up to ``n`` send times at a steady ``rate`` per second from ``start_ns`` (a tool's pacing),
    each late by up to ``jitter`` of the gap; as many as fit before ``end_ns``."""
    gap = S / rate
    n = int(min(n, max(1, np.ceil((end_ns - start_ns) / gap - jitter))))
    t = start_ns + np.arange(n) * gap + ctx.rng.random(n) * jitter * gap
    return np.minimum(t.astype(np.int64), end_ns - 1)


def _finished_by(conns: ConnTable, end_ns: int) -> int:
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


def _mss(ctx: SimContext) -> int:
    """A VM's TCP MSS (as benign traffic's): 1398 inside a VXLAN overlay, else 1448."""
    return 1398 if ctx.cloud.overlay else 1448


def _resolvers(ctx: SimContext) -> np.ndarray:
    """The public resolvers VMs without a ``dns`` VM use (as in :mod:`benign`: the first two internet hosts)."""
    return ctx.cloud.external[:2]


def _u(ctx: SimContext, lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` integers uniform in [lo, hi)."""
    return ctx.rng.integers(int(lo), int(hi), size=n, dtype=np.int64)


# --------------------------------------------------------------------------- scans


@compromise("port_scan_vertical")
def port_scan_vertical(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
                       ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """SYN scan of many ports of one host (nmap ``-sS``: one source port, randomised port order).

    Params: ``ports`` (1000; drawn from 1–1024 when ≤ 1024, else from 1–65535), ``rate_pps`` (100),
    ``target`` (VM name or IP; default a random other VM of the VPC), ``external`` (false: an
    internet host instead), ``filtered`` (fraction of closed ports that drop the probe; 0.05 for a
    VM, 0.95 for an internet host), ``retries`` (SYN retransmissions of a dropped probe, 1 as nmap).
    Open ports (the target role's services, or 22/80/443 outside) answer SYN-ACK and get a RST.
    """
    _known(params, "port_scan_vertical", ("ports", "rate_pps", "target", "external", "filtered", "retries"))
    s, e = _window(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    n_ports = int(param(params, "ports", 1000, int))
    if not 1 <= n_ports <= 65535:
        raise ConfigError(f"event parameter ports={n_ports}: must be within 1..65535")
    rate = _positive("rate_pps", param(params, "rate_pps", 100.0))
    ip, tvm = _target(ctx, vm, params, prefer_vm=True)
    filtered = _fraction("filtered", param(params, "filtered", 0.05 if tvm >= 0 else 0.95))
    retries = int(param(params, "retries", 1, int))
    pool = np.arange(1, 1025) if n_ports <= 1024 else np.arange(1, 65536)
    dport = rng.permutation(pool)[:n_ports]
    t = _paced(ctx, len(dport), rate, s, e)
    dport = dport[: len(t)]
    served = np.array(SERVICE_PORTS.get(str(c.role[tvm]), (22,)) if tvm >= 0 else EXTERNAL_OPEN)
    is_open = np.isin(dport, served)
    dropped = ~is_open & (rng.random(len(t)) < filtered)
    outcome = np.where(is_open, OUTCOME_OPEN_RST, np.where(dropped, OUTCOME_NO_ANSWER, OUTCOME_REJECT))
    conns = ConnTable.make(
        len(t), start_ns=t, client=c.ip[vm], server=ip, cport=ctx.ephemeral_ports(1)[0], sport=dport,
        vni=c.vni[vm], client_vm=vm, server_vm=tvm, rtt_ns=_rtt(ctx, vm, np.full(len(t), tvm), np.full(len(t), ip)),
        mss=1460, rounds=0, req_bytes=0, resp_bytes=0, outcome=outcome, syn_retries=np.where(dropped, retries, 0),
    )  # fmt: skip
    detail = f"target={_ip_text(ip)} ports={len(t)} open={int(is_open.sum())}"
    return conns, [_label(ctx, vm, "port_scan_vertical", s, _finished_by(conns, e), detail)]


@compromise("port_scan_horizontal")
def port_scan_horizontal(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
                         ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """One port across many addresses: the VM's /24 in order (.1–.254), then the next /24s.

    Params: ``port`` (22 or 445 at random), ``hosts`` (254), ``rate_pps`` (20), ``external``
    (false: sweep a random internet host's /24s instead), ``retries`` (0). VMs of the VPC answer
    (SYN-ACK then RST when they serve the port, RST-ACK otherwise); other addresses do not: their
    probes get ``server_vm`` = the scanning VM, because its virtual switch drops them (seen at the VM
    tap, never at the host uplink or the gateway).
    Outside, ``open_fraction`` (0.02) answer SYN-ACK and ``reject_fraction`` (0.05) RST-ACK.
    """
    _known(params, "port_scan_horizontal",
           ("port", "hosts", "rate_pps", "external", "retries", "open_fraction", "reject_fraction"))  # fmt: skip
    s, e = _window(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    port = _port(params, "port", (22, 445), ctx)
    n_hosts = int(param(params, "hosts", 254, int))
    if not 1 <= n_hosts <= 1 << 20:
        raise ConfigError(f"event parameter hosts={n_hosts}: must be within 1..{1 << 20}")
    rate = _positive("rate_pps", param(params, "rate_pps", 20.0))
    retries = int(param(params, "retries", 0, int))
    external = _flag(params, "external", False)
    base = (int(_external(ctx)[0]) if external else int(c.ip[vm])) & 0xFFFFFF00
    k = np.arange(n_hosts + n_hosts // 254 + 2, dtype=np.int64)
    addr = base + (k // 254) * 256 + k % 254 + 1  # .1 … .254 of each /24
    addr = addr[(addr != int(c.ip[vm])) & (addr < 1 << 32)][:n_hosts]
    t = _paced(ctx, len(addr), rate, s, e)
    addr = addr[: len(t)].astype(np.uint32)
    n = len(t)
    server_vm = np.full(n, -1 if external else vm, dtype=np.int64)
    if external:
        u = rng.random(n)
        open_f = _fraction("open_fraction", param(params, "open_fraction", 0.02))
        rej_f = _fraction("reject_fraction", param(params, "reject_fraction", 0.05))
        closed = np.where(u < open_f + rej_f, OUTCOME_REJECT, OUTCOME_NO_ANSWER)
        outcome = np.where(u < open_f, OUTCOME_OPEN_RST, closed)
    else:
        peers = _vpc_vms(ctx, vm)
        order = np.argsort(c.ip[peers]) if len(peers) else peers
        pip, pidx = c.ip[peers][order].astype(np.int64), peers[order]
        pos = np.clip(np.searchsorted(pip, addr), 0, max(len(pip) - 1, 0))
        hit = (pip[pos] == addr) if len(pip) else np.zeros(n, dtype=bool)
        server_vm[hit] = pidx[pos[hit]]
        serves = np.array([port in SERVICE_PORTS.get(str(r), ()) for r in c.role], dtype=bool)
        answered_open = hit & serves[np.where(hit, server_vm, 0)]
        outcome = np.where(answered_open, OUTCOME_OPEN_RST, np.where(hit, OUTCOME_REJECT, OUTCOME_NO_ANSWER))
    unanswered = outcome == OUTCOME_NO_ANSWER
    conns = ConnTable.make(
        n, start_ns=t, client=c.ip[vm], server=addr, cport=ctx.ephemeral_ports(n), sport=port, vni=c.vni[vm],
        client_vm=vm, server_vm=server_vm, rtt_ns=_rtt(ctx, vm, np.where(server_vm == vm, -1, server_vm), addr),
        mss=1460, rounds=0, req_bytes=0, resp_bytes=0, outcome=outcome, syn_retries=np.where(unanswered, retries, 0),
    )  # fmt: skip
    detail = f"port={port} hosts={n} from={_ip_text(base)}/24 answered={int((~unanswered).sum())}"
    return conns, [_label(ctx, vm, "port_scan_horizontal", s, _finished_by(conns, e), detail)]


# --------------------------------------------------------------------------- brute force, C2, exfiltration


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
    _known(params, "ssh_bruteforce", ("role", "target", "sources", "rate", "connections", "attempts", "rst_fraction",
                                      "pacing"))  # fmt: skip
    s, e = _window(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    role = str(params.get("role", "attacker"))
    if role not in ("attacker", "victim"):
        raise ConfigError(f"event parameter role={role!r}: expected attacker or victim")
    if "connections" in params:
        n = int(param(params, "connections", 0, int))
        t = np.sort(s + (rng.random(max(n, 0)) * (e - s)).astype(np.int64))
    elif str(params.get("pacing", "poisson")) == "sequential":
        rate = _positive("rate", param(params, "rate", 2.0))
        t = _paced(ctx, int(rate * (e - s) / S) + 1, rate, s, e, jitter=0.3)
    elif str(params.get("pacing", "poisson")) == "poisson":
        t = ctx.poisson_times(_positive("rate", param(params, "rate", 2.0)), s, e)
    else:
        raise ConfigError(f"event parameter pacing={params.get('pacing')!r}: expected poisson or sequential")
    n = len(t)
    attempts = max(1, int(param(params, "attempts", 3, int)))
    rst = _fraction("rst_fraction", param(params, "rst_fraction", 0.3))
    if role == "attacker":
        ip, tvm = _target(ctx, vm, params, prefer_vm=False)
        client, server, client_vm, server_vm = c.ip[vm], np.full(n, ip, np.uint32), vm, np.full(n, tvm)
        rtt, peer = _rtt(ctx, vm, server_vm, server), _ip_text(ip)
    else:
        src = _external(ctx, max(1, int(param(params, "sources", 1, int))))
        client = src[rng.integers(0, len(src), size=n)]
        server, client_vm, server_vm = c.ip[vm], -1, vm
        rtt, peer = ctx.external_rtt_ns(client), ",".join(_ip_text(x) for x in src[:4])
    # Banner + key exchange (2 rounds) and the password tries; sshd answers failures after a delay.
    conns = ConnTable.make(
        n, start_ns=t, client=client, server=server, cport=ctx.ephemeral_ports(n), sport=22, vni=c.vni[vm],
        client_vm=client_vm, server_vm=server_vm, rtt_ns=rtt, mss=_mss(ctx), rounds=2 + attempts,
        req_bytes=_u(ctx, 90, 700, n), resp_bytes=_u(ctx, 60, 1100, n), think_ns=_u(ctx, 20 * MS, 300 * MS, n),
        server_ns=_u(ctx, 5 * MS, 60 * MS, n), outcome=np.where(rng.random(n) < rst, OUTCOME_RST_SERVER, OUTCOME_FIN),
        app=APP_SSH,
    )  # fmt: skip
    return conns, [_label(ctx, vm, "ssh_bruteforce", s, e, f"role={role} peer={peer} connections={n}")]


@compromise("c2_beacon")
def c2_beacon(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
              ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """An implant calling home: one small HTTPS exchange with one internet host every period.

    Params: ``period_s`` (30), ``jitter`` (0.1: each gap uniform in period·(1 ± jitter)), ``port``
    (443), ``target`` (the C2 address; a random internet host), ``task_fraction`` (0.05 of beacons
    fetch a task: a 2–20 kB answer instead of a few hundred bytes).
    """
    _known(params, "c2_beacon", ("period_s", "jitter", "port", "target", "task_fraction"))
    s, e = _window(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    period = _positive("period_s", param(params, "period_s", 30.0)) * S
    jitter = _fraction("jitter", param(params, "jitter", 0.1))
    port = _port(params, "port", (443,), ctx)
    task = _fraction("task_fraction", param(params, "task_fraction", 0.05))
    ip, _ = _target(ctx, vm, params, prefer_vm=False)
    m = int((e - s) / (period * max(1.0 - jitter, 0.05))) + 2
    gaps = period * (1.0 + jitter * (2.0 * rng.random(m) - 1.0))
    t = (s + rng.random() * period + np.concatenate([[0.0], np.cumsum(gaps[:-1])])).astype(np.int64)
    t = t[t < e]
    n = len(t)
    resp = np.where(rng.random(n) < task, _u(ctx, 2000, 20000, n), _u(ctx, 120, 500, n))
    conns = ConnTable.make(
        n, start_ns=t, client=c.ip[vm], server=ip, cport=ctx.ephemeral_ports(n), sport=port, vni=c.vni[vm],
        client_vm=vm, server_vm=-1, rtt_ns=ctx.external_rtt_ns(np.full(n, ip, np.uint32)), mss=_mss(ctx), rounds=1,
        req_bytes=_u(ctx, 200, 600, n), resp_bytes=resp, server_ns=_u(ctx, 2 * MS, 30 * MS, n), app=APP_TLS,
    )  # fmt: skip
    detail = f"c2={_ip_text(ip)}:{port} period_s={period / S:g} jitter={jitter:g} beacons={n}"
    return conns, [_label(ctx, vm, "c2_beacon", s, e, detail)]


@compromise("exfiltration")
def exfiltration(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
                 ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """Large uploads from the VM to one internet host, staggered over the window.

    Params: ``total_mb`` (200, MB = 10^6 bytes, split unevenly; each upload is trimmed to what a
    64 KiB window per round trip moves before the window ends), ``connections`` (4), ``port``
    (443 or 22 at random; 22 is SSH/scp, else TLS), ``chunk_mb`` (16: bytes sent per round before
    the server's small acknowledgement), ``target`` (a random internet host).
    """
    _known(params, "exfiltration", ("total_mb", "connections", "port", "chunk_mb", "target"))
    s, e = _window(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    total = int(_positive("total_mb", param(params, "total_mb", 200.0)) * 1e6)
    k = max(1, int(param(params, "connections", 4, int)))
    port = _port(params, "port", (443, 22), ctx)
    chunk = int(_positive("chunk_mb", param(params, "chunk_mb", 16.0)) * 1e6)
    ip, _ = _target(ctx, vm, params, prefer_vm=False)
    rtt = ctx.external_rtt_ns(np.full(k, ip, np.uint32))
    # staggered over the first half of the window; each upload no larger than fits before its end
    # at one receive window per round trip (tcpgen's cap), with a margin for slow start and rounds
    t = (s + (np.arange(k) + 0.25 * rng.random(k)) * ((e - s) / (2 * k))).astype(np.int64)
    fits = (0.85 * WINDOW * np.maximum((e - t) / rtt - 4, 0)).astype(np.int64)
    size = np.clip((rng.dirichlet(np.full(k, 4.0)) * total).astype(np.int64), 1, np.maximum(fits, 1))
    rounds = np.maximum(-(-size // chunk), 1)
    conns = ConnTable.make(
        k, start_ns=t, client=c.ip[vm], server=ip, cport=ctx.ephemeral_ports(k), sport=port, vni=c.vni[vm],
        client_vm=vm, server_vm=-1, rtt_ns=rtt, mss=_mss(ctx), rounds=rounds,
        req_bytes=-(-size // rounds), resp_bytes=_u(ctx, 40, 200, k), server_ns=_u(ctx, 1 * MS, 10 * MS, k),
        app=APP_SSH if port == 22 else APP_TLS,
    )  # fmt: skip
    detail = f"dest={_ip_text(ip)}:{port} bytes={int(conns['req_bytes'] @ conns['rounds'])} connections={k}"
    # the label ends when the last upload does (one receive window per round trip), not at the window's end
    done = int(min(e, (t + rtt * (size / (0.85 * WINDOW) + 4)).max()))
    return conns, [_label(ctx, vm, "exfiltration", s, done, detail)]


# --------------------------------------------------------------------------- floods


def _flood_times(ctx: SimContext, params: dict[str, Any], s: int, e: int) -> np.ndarray:
    rate = _positive("rate", param(params, "rate", 2000.0))
    cap = max(1, int(param(params, "max_packets", 200_000, int)))
    return _paced(ctx, cap, rate, s, e, jitter=0.9)


@compromise("ddos_syn")
def ddos_syn(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
             ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """SYN flood: unanswered SYNs (no retransmission) from random source ports.

    Params: ``role`` (``attacker``: the VM floods ``target`` / a random internet host; ``victim``: spoofed
    random public sources flood the VM, one SYN each mostly), ``rate`` (2000 SYNs/s), ``max_packets``
    (200000: the flood stops early past it), ``port`` (80 or 443 at random), ``target`` (attacker only).
    """
    _known(params, "ddos_syn", ("role", "rate", "max_packets", "port", "target"))
    s, e = _window(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    role = str(params.get("role", "attacker"))
    if role not in ("attacker", "victim"):
        raise ConfigError(f"event parameter role={role!r}: expected attacker or victim")
    port = _port(params, "port", (80, 443), ctx)
    t = _flood_times(ctx, params, s, e)
    n = len(t)
    if role == "attacker":
        ip, _ = _target(ctx, vm, params, prefer_vm=False)
        client, server, client_vm, server_vm = c.ip[vm], np.full(n, ip, np.uint32), vm, -1
        rtt, who = ctx.external_rtt_ns(server), f"target={_ip_text(ip)}:{port}"
    else:
        client = _spoofed_sources(rng, n)
        server, client_vm, server_vm = np.full(n, c.ip[vm], np.uint32), -1, vm
        rtt, who = ctx.external_rtt_ns(client), f"role=victim port={port} sources={len(np.unique(client))}"
    conns = ConnTable.make(
        n, start_ns=t, client=client, server=server, cport=rng.integers(1024, 65536, size=n), sport=port,
        vni=c.vni[vm], client_vm=client_vm, server_vm=server_vm, rtt_ns=rtt, mss=1460,
        rounds=0, req_bytes=0, resp_bytes=0, outcome=OUTCOME_NO_ANSWER, syn_retries=0,
    )  # fmt: skip
    detail = f"{who} syns={n}"
    return conns, [_label(ctx, vm, "ddos_syn", s, _finished_by(conns, e), detail)]


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
    _known(params, "ddos_udp", ("rate", "max_packets", "port", "payload", "target"))
    s, e = _window(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    p = params.get("port", "random")
    ip, _ = _target(ctx, vm, params, prefer_vm=False)
    t = _flood_times(ctx, params, s, e)
    n = len(t)
    fixed = None if str(p) == "random" else _port({"port": p}, "port", (), ctx)
    lo, hi = QUIET_UDP_PORTS
    dport = rng.integers(lo, hi + 1, size=n) if fixed is None else np.full(n, fixed)
    payload = max(1, int(param(params, "payload", 512, int)))
    app = np.where(dport == 53, APP_DNS, APP_NONE)
    conns = ConnTable.make(
        n, proto=17, start_ns=t, client=c.ip[vm], server=ip, cport=rng.integers(lo, hi + 1, size=n), sport=dport,
        vni=c.vni[vm], client_vm=vm, server_vm=-1, rtt_ns=ctx.external_rtt_ns(np.full(n, ip, np.uint32)), rounds=1,
        req_bytes=payload, resp_bytes=0, app=app,
    )  # fmt: skip
    detail = f"target={_ip_text(ip)} port={p} datagrams={n} payload={payload}"
    return conns, [_label(ctx, vm, "ddos_udp", s, _finished_by(conns, e), detail)]


# --------------------------------------------------------------------------- DNS tunnel, lateral movement, mining


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
    _known(params, "dns_tunnel", ("rate", "resolver", "forward"))
    s, e = _window(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    rate = _positive("rate", param(params, "rate", 5.0))
    if "resolver" in params:
        ip, rvm = _target(ctx, vm, {"target": params["resolver"]}, prefer_vm=False)
    else:
        peers = _vpc_vms(ctx, vm)
        dns = peers[c.role[peers] == "dns"] if len(peers) else peers
        if len(dns):
            rvm = int(dns[rng.integers(0, len(dns))])
            ip = int(c.ip[rvm])
        else:
            pub = _resolvers(ctx)
            ip, rvm = int(pub[rng.integers(0, len(pub))]), -1
    t = ctx.poisson_times(rate, s, e)
    n = len(t)
    rtt = _rtt(ctx, vm, np.full(n, rvm), np.full(n, ip, np.uint32))
    req, resp = _u(ctx, 150, 251, n), _u(ctx, 200, 401, n)
    pub = _resolvers(ctx)
    up = pub[rng.integers(0, len(pub), size=n)]
    up_rtt = ctx.external_rtt_ns(up)
    # the authoritative server (the attacker's) is a further internet round trip away
    auth_ns = _u(ctx, 15 * MS, 120 * MS, n)
    forward = rvm >= 0 and _flag(params, "forward", True)
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
    detail = f"resolver={_ip_text(ip)} queries={n}" + (" forwarded" if forward else "")
    return concat(conns), [_label(ctx, vm, "dns_tunnel", s, e, detail)]


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
    _known(params, "lateral_movement", ("ports", "targets", "rate", "filtered", "sessions"))
    s, e = _window(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    ports = np.array([int(p) for p in params.get("ports", ADMIN_PORTS)], dtype=np.int64)
    if not len(ports) or ports.min() < 1 or ports.max() > 65535:
        raise ConfigError(f"event parameter ports={params.get('ports')!r}: expected a list of port numbers")
    peers = _vpc_vms(ctx, vm)
    if not len(peers):
        raise ConfigError(f"lateral_movement: {c.name[vm]} has no other VM in its VPC ({c.vpc[vm]})")
    peers = rng.permutation(peers)[: max(1, int(param(params, "targets", len(peers), int)))]
    rate = _positive("rate", param(params, "rate", 2.0))
    filtered = _fraction("filtered", param(params, "filtered", 0.3))
    sessions = _fraction("sessions", param(params, "sessions", 1.0))
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
    rounds = np.where(login, _u(ctx, 4, 12, n), np.where(ok, 3, 0))
    conns = ConnTable.make(
        n, start_ns=t, client=c.ip[vm], server=c.ip[tvm], cport=ctx.ephemeral_ports(n), sport=dport, vni=c.vni[vm],
        client_vm=vm, server_vm=tvm, rtt_ns=_rtt(ctx, vm, tvm, c.ip[tvm]), mss=_mss(ctx), rounds=rounds,
        req_bytes=_u(ctx, 100, 1500, n), resp_bytes=_u(ctx, 100, 4000, n), think_ns=_u(ctx, 50 * MS, 800 * MS, n),
        server_ns=_u(ctx, 1 * MS, 20 * MS, n), outcome=outcome, syn_retries=np.where(dropped, 1, 0),
        app=np.where(dport == 22, APP_SSH, APP_NONE),
    )  # fmt: skip
    detail = f"targets={len(np.unique(tvm))} attempts={n} sessions={int(login.sum())}"
    return conns, [_label(ctx, vm, "lateral_movement", s, _finished_by(conns, e), detail)]


@compromise("crypto_mining")
def crypto_mining(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
                  ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """A miner: long-lived Stratum connection(s) to an internet pool, a share submitted every 10–30 s.

    Params: ``connections`` (1), ``port`` (3333 or 4444 at random), ``target`` (the pool; a random
    internet host), ``share_s`` ([10, 30]: each connection's submission interval is drawn from it).
    Connections stay open past the window (OUTCOME_OPEN); their last round starts before its end.
    """
    _known(params, "crypto_mining", ("connections", "port", "target", "share_s"))
    s, e = _window(ctx, start_ns, end_ns)
    c = ctx.cloud
    k = max(1, int(param(params, "connections", 1, int)))
    port = _port(params, "port", (3333, 4444), ctx)
    lo, hi = (float(x) for x in params.get("share_s", (10.0, 30.0)))
    if not 0 < lo <= hi:
        raise ConfigError(f"event parameter share_s={params.get('share_s')!r}: expected [low, high] seconds > 0")
    ip, _ = _target(ctx, vm, params, prefer_vm=False)
    rtt = ctx.external_rtt_ns(np.full(k, ip, np.uint32))
    t = s + _u(ctx, 0, min(2 * S, (e - s) // 2 + 1), k)
    think = (lo + (hi - lo) * ctx.rng.random(k)) * S
    server = _u(ctx, 1 * MS, 5 * MS, k)
    step = think.astype(np.int64) + rtt + server
    rounds = np.maximum(1, 1 + (e - t - rtt - server) // step)
    conns = ConnTable.make(
        k, start_ns=t, client=c.ip[vm], server=ip, cport=ctx.ephemeral_ports(k), sport=port, vni=c.vni[vm],
        client_vm=vm, server_vm=-1, rtt_ns=rtt, mss=_mss(ctx), rounds=rounds, req_bytes=_u(ctx, 150, 260, k),
        resp_bytes=_u(ctx, 80, 400, k), think_ns=think, server_ns=server, outcome=OUTCOME_OPEN, syn_retries=2,
        app=APP_STRATUM,
    )  # fmt: skip
    detail = f"pool={_ip_text(ip)}:{port} connections={k} shares={int(rounds.sum())}"
    return conns, [_label(ctx, vm, "crypto_mining", s, e, detail)]
