"""Password guessing against any service: many short connections to one port, each a few login tries.

Why: a guesser is recognised by its repeated short connections to one service, whatever the port, so the
simulated world must show it on FTP, Telnet, RDP, HTTP auth, databases, SMTP and custom ports, not only SSH.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.simulate.attacks.helpers import (
    clip_to_scenario,
    compromise_label,
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
)
from netsentry.pipeline.simulate.conns import (
    APP_FTP,
    APP_HTTP,
    APP_NONE,
    APP_SQL,
    APP_SSH,
    APP_TLS,
    OUTCOME_FIN,
    OUTCOME_RST_SERVER,
    ConnTable,
)
from netsentry.pipeline.simulate.events import MS, Label, S, SimContext, compromise, param


@dataclass(frozen=True)
class Service:
    """One login exchange: setup rounds (banner, negotiation, TLS), rounds per password try, sizes and the
    server's failure delay (what a guess costs on the wire)."""

    port: int
    app: int
    setup_rounds: int
    rounds_per_try: int
    req: tuple[int, int]  # client bytes a round
    resp: tuple[int, int]  # server bytes a round
    fail_delay_ns: tuple[int, int]  # server time before answering a try
    tries: int  # default password tries a connection


SERVICES: dict[str, Service] = {
    # sshd: banner + key exchange, then up to MaxAuthTries; failures answered after a short PAM delay
    "ssh": Service(22, APP_SSH, 2, 1, (90, 700), (60, 1100), (5 * MS, 60 * MS), 3),
    # vsftpd/proftpd: USER + PASS per try, delay_failed_login 1 s
    "ftp": Service(21, APP_FTP, 1, 2, (10, 30), (20, 80), (300 * MS, 1000 * MS), 3),
    # telnetd + login(1): option negotiation, login/password prompts, FAIL_DELAY 3 s
    "telnet": Service(23, APP_NONE, 3, 2, (3, 20), (10, 60), (1000 * MS, 3000 * MS), 3),
    # RDP with NLA: X.224, TLS handshake, CredSSP; one try a connection
    "rdp": Service(3389, APP_TLS, 3, 1, (200, 1500), (300, 3000), (50 * MS, 300 * MS), 1),
    # HTTP basic/form auth: one request, a 401/200 back
    "http-auth": Service(80, APP_HTTP, 0, 1, (250, 450), (300, 700), (1 * MS, 20 * MS), 1),
    "https-auth": Service(443, APP_TLS, 2, 1, (300, 600), (400, 1500), (1 * MS, 20 * MS), 1),
    # databases: greeting/startup, one authentication a connection
    "mysql": Service(3306, APP_NONE, 1, 1, (60, 120), (50, 110), (1 * MS, 10 * MS), 1),
    "postgres": Service(5432, APP_SQL, 1, 1, (40, 120), (20, 110), (1 * MS, 10 * MS), 1),
    "mssql": Service(1433, APP_NONE, 1, 1, (100, 300), (40, 200), (1 * MS, 10 * MS), 1),
    # submission with AUTH LOGIN: EHLO, then AUTH/user/password; smtpd_error_sleep_time 1 s
    "smtp-auth": Service(587, APP_NONE, 1, 3, (10, 40), (20, 100), (200 * MS, 1000 * MS), 2),
    # anything else: give ``port``
    "custom": Service(0, APP_NONE, 1, 1, (20, 200), (20, 200), (1 * MS, 50 * MS), 1),
}
"""Login exchanges per service (defaults of the common daemons)."""

KNOWN = ("service", "port", "role", "target", "sources", "rate", "connections", "attempts", "rst_fraction",
         "pacing", "threads")  # fmt: skip


def _service(params: dict[str, Any], fixed: str | None) -> tuple[str, Service, int]:
    name = fixed or str(params.get("service", "ssh"))
    if name not in SERVICES:
        raise ConfigError(f"event parameter service={name!r}: expected one of {', '.join(SERVICES)}")
    svc = SERVICES[name]
    port = int(param(params, "port", svc.port, int))
    if not 1 <= port <= 65535:
        raise ConfigError(f"event parameter port={params.get('port')!r}: a port number is needed for service={name}")
    return name, svc, port


def _times(ctx: SimContext, params: dict[str, Any], s: int, e: int) -> np.ndarray:
    """Connection start times: ``connections`` spread evenly at random, or ``pacing`` poisson (rate) or
    sequential (``threads`` streams, each one connection after another at ``rate``, up to 30 % of a gap late)."""
    if "connections" in params:
        n = max(int(param(params, "connections", 0, int)), 0)
        return np.sort(s + (ctx.rng.random(n) * (e - s)).astype(np.int64))
    pacing = str(params.get("pacing", "poisson"))
    rate = positive("rate", param(params, "rate", 2.0))
    if pacing == "poisson":
        return ctx.poisson_times(rate, s, e)
    if pacing != "sequential":
        raise ConfigError(f"event parameter pacing={params.get('pacing')!r}: expected poisson or sequential")
    threads = int(positive("threads", param(params, "threads", 1, int)))
    streams = []
    for _ in range(threads):  # tools start their threads within the first gap
        t0 = s + int(ctx.rng.random() * S / rate) if threads > 1 else s
        streams.append(paced_times(ctx, int(rate * (e - t0) / S) + 1, rate, t0, e, jitter=0.3))
    return np.sort(np.concatenate(streams))


def guess(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any], label: str,
          fixed: str | None) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """The guessing connections and their label (``label`` is the scenario name written)."""
    reject_unknown_params(params, label, KNOWN)
    name, svc, port = _service(params, fixed)
    s, e = clip_to_scenario(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    role = str(params.get("role", "attacker"))
    if role not in ("attacker", "victim"):
        raise ConfigError(f"event parameter role={role!r}: expected attacker or victim")
    t = _times(ctx, params, s, e)
    n = len(t)
    tries = max(1, int(param(params, "attempts", svc.tries, int)))
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
    conns = ConnTable.make(
        n, start_ns=t, client=client, server=server, cport=ctx.ephemeral_ports(n), sport=port, vni=c.vni[vm],
        client_vm=client_vm, server_vm=server_vm, rtt_ns=rtt, mss=vm_mss(ctx),
        rounds=svc.setup_rounds + svc.rounds_per_try * tries,
        req_bytes=uniform_ints(ctx, *svc.req, n), resp_bytes=uniform_ints(ctx, *svc.resp, n),
        think_ns=uniform_ints(ctx, 20 * MS, 300 * MS, n), server_ns=uniform_ints(ctx, *svc.fail_delay_ns, n),
        outcome=np.where(rng.random(n) < rst, OUTCOME_RST_SERVER, OUTCOME_FIN), app=svc.app,
    )  # fmt: skip
    detail = f"service={name} port={port} role={role} peer={peer} connections={n}"
    return conns, [compromise_label(ctx, vm, label, s, e, detail)]


@compromise("bruteforce")
def bruteforce(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
               ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """Password guessing against ``service`` (see :data:`SERVICES`; ``port`` overrides its port, and is
    required for ``custom``).

    Params: ``role`` (``attacker``: the VM guesses at ``target`` / a random internet host; ``victim``:
    ``sources`` (1) internet hosts guess at the VM), ``rate`` (2 connections/s), ``pacing`` (``poisson``, or
    ``sequential``: ``threads`` (1) streams of back-to-back connections at ``rate`` each, as hydra ``-t N``;
    ncrack's paranoid timing is one stream at a low rate), or exactly ``connections`` spread over the window,
    ``attempts`` (the service's tries a connection), ``rst_fraction`` (0.3 of connections the server resets).
    """
    return guess(ctx, vm, start_ns, end_ns, params, "bruteforce", None)


@compromise("ssh_bruteforce")
def ssh_bruteforce(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
                   ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """:func:`bruteforce` with ``service: ssh`` (the original name, labelled ``ssh_bruteforce``)."""
    return guess(ctx, vm, start_ns, end_ns, params, "ssh_bruteforce", "ssh")
