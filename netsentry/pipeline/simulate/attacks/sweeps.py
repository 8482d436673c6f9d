"""Host discovery sweeps: ICMP echo (nmap ``-sn``, fping) or TCP SYN to 80/443 across a /24, and UDP probes
(one port on many hosts, or many ports on one host).

Why: most probes of a sweep go unanswered, whatever the protocol, so the world must hold ICMP and UDP sweeps
and not only TCP scans. ICMP errors (host/port unreachable) are not modelled: those probes stay unanswered.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.simulate.attacks.helpers import (
    bool_param,
    clip_to_scenario,
    compromise_label,
    finished_by,
    fraction,
    internet_hosts,
    ipv4_text,
    paced_times,
    pick_target,
    port_param,
    positive,
    reject_unknown_params,
    rtt_ns_to,
    vpc_peers,
)
from netsentry.pipeline.simulate.attacks.scans import port_scan_horizontal
from netsentry.pipeline.simulate.conns import APP_DNS, APP_NONE, ConnTable
from netsentry.pipeline.simulate.events import Label, S, SimContext, compromise, param

UDP_SERVICES: dict[str, tuple[int, ...]] = {"dns": (53,)}
"""UDP ports a VM of each role answers on (others: the probe is dropped or draws an unmodelled ICMP error)."""
RETRY_GAP_NS = S
"""Wait before re-sending an unanswered probe (nmap's and fping's initial timeouts are ~1 s and 0.5 s)."""


def sweep_addresses(ctx: SimContext, vm: int, n_hosts: int, external: bool) -> tuple[np.ndarray, int]:
    """``n_hosts`` addresses .1–.254 of the VM's /24 (then the next /24s), or of a random internet host's;
    the scanner's own address skipped. Also returns the first /24's base."""
    if not 1 <= n_hosts <= 1 << 20:
        raise ConfigError(f"event parameter hosts={n_hosts}: must be within 1..{1 << 20}")
    base = (int(internet_hosts(ctx)[0]) if external else int(ctx.cloud.ip[vm])) & 0xFFFFFF00
    k = np.arange(n_hosts + n_hosts // 254 + 2, dtype=np.int64)
    addr = base + (k // 254) * 256 + k % 254 + 1
    addr = addr[(addr != int(ctx.cloud.ip[vm])) & (addr < 1 << 32)][:n_hosts]
    return addr.astype(np.uint32), base


def vpc_owner(ctx: SimContext, vm: int, addr: np.ndarray) -> np.ndarray:
    """Index of the VM of ``vm``'s VPC at each address, -1 where none is."""
    peers = vpc_peers(ctx, vm)
    owner = np.full(len(addr), -1, dtype=np.int64)
    if not len(peers):
        return owner
    pip = ctx.cloud.ip[peers].astype(np.int64)
    order = np.argsort(pip)
    pos = np.clip(np.searchsorted(pip[order], addr.astype(np.int64)), 0, len(pip) - 1)
    hit = pip[order][pos] == addr
    owner[hit] = peers[order][pos[hit]]
    return owner


def _probes(ctx: SimContext, vm: int, addr: np.ndarray, owner: np.ndarray, t: np.ndarray,
            **cols: Any) -> ConnTable:  # fmt: skip
    """One probe connection per address; unanswered probes to no VM are dropped at the scanner's virtual switch
    (``server_vm`` = the scanner, as :func:`port_scan_horizontal`)."""
    c, n = ctx.cloud, len(t)
    server_vm = np.where(owner >= 0, owner, -1 if cols.pop("external") else vm)
    rtt = rtt_ns_to(ctx, vm, np.where(server_vm == vm, -1, server_vm), addr)
    return ConnTable.make(n, start_ns=t, client=c.ip[vm], server=addr, vni=c.vni[vm], client_vm=vm,
                          server_vm=server_vm, rtt_ns=rtt, think_ns=RETRY_GAP_NS, **cols)  # fmt: skip


@compromise("ping_sweep")
def ping_sweep(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
               ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """Echo requests to every address of the VM's /24 (``external``: an internet /24), in order.

    Params: ``method`` (``icmp``; ``tcp``: SYN to ``port`` 80 or 443, as ``nmap -PS``), ``hosts`` (254),
    ``rate_pps`` (50), ``identifier`` (``varying``: a new echo identifier per probe, as nmap; ``constant``: one
    for the sweep, as fping/ping), ``payload`` (56 bytes, at least 1: a reply must carry bytes here), ``retries``
    (0: re-sends of an unanswered request 1 s apart; fping's default is 3), ``alive_fraction`` (outside: 0.05 of
    addresses reply). Inside, every VM of the VPC replies; other addresses stay silent.
    """
    known = ("method", "hosts", "rate_pps", "identifier", "payload", "retries", "alive_fraction", "external", "port")
    reject_unknown_params(params, "ping_sweep", known)
    method = str(params.get("method", "icmp"))
    if method == "tcp":
        tcp = {k: params[k] for k in ("port", "hosts", "rate_pps", "external", "retries") if k in params}
        tcp.setdefault("port", port_param(params, "port", (80, 443), ctx))
        conns, labels = port_scan_horizontal(ctx, vm, start_ns, end_ns, tcp)
        return conns, [dataclasses.replace(lab, scenario="ping_sweep", detail=f"method=tcp {lab.detail}")
                       for lab in labels]  # fmt: skip
    if method != "icmp":
        raise ConfigError(f"event parameter method={method!r}: expected icmp or tcp")
    s, e = clip_to_scenario(ctx, start_ns, end_ns)
    external = bool_param(params, "external", False)
    addr, base = sweep_addresses(ctx, vm, int(param(params, "hosts", 254, int)), external)
    t = paced_times(ctx, len(addr), positive("rate_pps", param(params, "rate_pps", 50.0)), s, e)
    addr, n = addr[: len(t)], len(t)
    owner = vpc_owner(ctx, vm, addr) if not external else np.full(n, -1, dtype=np.int64)
    alive = fraction("alive_fraction", param(params, "alive_fraction", 0.05))
    answered = owner >= 0 if not external else ctx.rng.random(n) < alive
    ident = str(params.get("identifier", "varying"))
    if ident not in ("varying", "constant"):
        raise ConfigError(f"event parameter identifier={ident!r}: expected varying or constant")
    ids = ctx.rng.integers(1, 65536, size=n) if ident == "varying" else np.full(n, ctx.rng.integers(1, 65536))
    payload = int(positive("payload", param(params, "payload", 56, int)))
    retries = max(0, int(param(params, "retries", 0, int)))
    conns = _probes(ctx, vm, addr, owner, t, external=external, proto=1, cport=ids, sport=0,
                    rounds=np.where(answered, 1, 1 + retries), req_bytes=payload,
                    resp_bytes=np.where(answered, payload, 0), server_ns=20_000)  # fmt: skip
    detail = f"method=icmp hosts={n} from={ipv4_text(base)}/24 answered={int(answered.sum())} identifier={ident}"
    return conns, [compromise_label(ctx, vm, "ping_sweep", s, finished_by(conns, e), detail)]


@compromise("udp_sweep")
def udp_sweep(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
              ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """UDP probes (nmap ``-sU``: empty datagrams): ``mode`` ``hosts`` sends one ``port`` (53, 123, 161 or 137)
    to the addresses of the VM's /24 (or an internet /24 with ``external``); ``mode`` ``ports`` sends ``ports``
    (1000, from 1–1024 when ≤ 1024) to one ``target`` (a random other VM of the VPC, or an internet host).

    Params: ``rate_pps`` (50), ``hosts`` (254), ``payload`` (0 bytes), ``retries`` (1: nmap re-sends an
    unanswered probe), ``answer_fraction`` (outside: 0.02 of probes answered). A VM answers where its role serves
    the port (:data:`UDP_SERVICES`); everything else is silent.
    """
    known = ("mode", "port", "ports", "hosts", "target", "external", "rate_pps", "payload", "retries",
             "answer_fraction")  # fmt: skip
    reject_unknown_params(params, "udp_sweep", known)
    s, e = clip_to_scenario(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    mode = str(params.get("mode", "hosts"))
    rate = positive("rate_pps", param(params, "rate_pps", 50.0))
    external = bool_param(params, "external", False)
    if mode == "hosts":
        port = port_param(params, "port", (53, 123, 137, 161), ctx)
        addr, base = sweep_addresses(ctx, vm, int(param(params, "hosts", 254, int)), external)
        dport, where = np.full(len(addr), port), f"port={port} from={ipv4_text(base)}/24"
    elif mode == "ports":
        n_ports = int(param(params, "ports", 1000, int))
        if not 1 <= n_ports <= 65535:
            raise ConfigError(f"event parameter ports={n_ports}: must be within 1..65535")
        ip, _ = pick_target(ctx, vm, params, prefer_vm=not external)
        dport = rng.permutation(np.arange(1, 1025) if n_ports <= 1024 else np.arange(1, 65536))[:n_ports]
        addr, where = np.full(n_ports, ip, dtype=np.uint32), f"target={ipv4_text(ip)}"
        external = not bool((vpc_owner(ctx, vm, addr[:1]) >= 0)[0])
    else:
        raise ConfigError(f"event parameter mode={mode!r}: expected hosts or ports")
    t = paced_times(ctx, len(addr), rate, s, e)
    n = len(t)
    addr, dport = addr[:n], dport[:n]
    owner = vpc_owner(ctx, vm, addr) if not external else np.full(n, -1, dtype=np.int64)
    serves = np.array([int(d) in UDP_SERVICES.get(str(c.role[o]), ()) if o >= 0 else False
                       for o, d in zip(owner, dport, strict=True)], dtype=bool)  # fmt: skip
    share = fraction("answer_fraction", param(params, "answer_fraction", 0.02))
    answered = serves if not external else (rng.random(n) < share)
    payload = max(0, int(param(params, "payload", 0, int)))
    retries = max(0, int(param(params, "retries", 1, int)))
    conns = _probes(ctx, vm, addr, owner, t, external=external, proto=17, cport=ctx.ephemeral_ports(1)[0],
                    sport=dport, rounds=np.where(answered, 1, 1 + retries), req_bytes=payload,
                    resp_bytes=np.where(answered, rng.integers(40, 200, size=n), 0),
                    app=np.where(dport == 53, APP_DNS, APP_NONE))  # fmt: skip
    detail = f"mode={mode} {where} probes={n} answered={int(answered.sum())}"
    return conns, [compromise_label(ctx, vm, "udp_sweep", s, finished_by(conns, e), detail)]
