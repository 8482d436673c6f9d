"""Port scans: one host's ports (vertical) and one port across many hosts (horizontal)."""

from __future__ import annotations

from typing import Any

import numpy as np

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.simulate.attacks.helpers import (
    SERVICE_PORTS,
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
from netsentry.pipeline.simulate.conns import (
    OUTCOME_NO_ANSWER,
    OUTCOME_OPEN_RST,
    OUTCOME_REJECT,
    ConnTable,
)
from netsentry.pipeline.simulate.events import Label, SimContext, compromise, param

EXTERNAL_OPEN = (22, 80, 443)
"""Ports an internet host answers on when scanned."""


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
    reject_unknown_params(
        params, "port_scan_vertical", ("ports", "rate_pps", "target", "external", "filtered", "retries")
    )
    s, e = clip_to_scenario(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    n_ports = int(param(params, "ports", 1000, int))
    if not 1 <= n_ports <= 65535:
        raise ConfigError(f"event parameter ports={n_ports}: must be within 1..65535")
    rate = positive("rate_pps", param(params, "rate_pps", 100.0))
    ip, tvm = pick_target(ctx, vm, params, prefer_vm=True)
    filtered = fraction("filtered", param(params, "filtered", 0.05 if tvm >= 0 else 0.95))
    retries = int(param(params, "retries", 1, int))
    pool = np.arange(1, 1025) if n_ports <= 1024 else np.arange(1, 65536)
    dport = rng.permutation(pool)[:n_ports]
    t = paced_times(ctx, len(dport), rate, s, e)
    dport = dport[: len(t)]
    served = np.array(SERVICE_PORTS.get(str(c.role[tvm]), (22,)) if tvm >= 0 else EXTERNAL_OPEN)
    is_open = np.isin(dport, served)
    dropped = ~is_open & (rng.random(len(t)) < filtered)
    outcome = np.where(is_open, OUTCOME_OPEN_RST, np.where(dropped, OUTCOME_NO_ANSWER, OUTCOME_REJECT))
    conns = ConnTable.make(
        len(t), start_ns=t, client=c.ip[vm], server=ip, cport=ctx.ephemeral_ports(1)[0], sport=dport, vni=c.vni[vm],
        client_vm=vm, server_vm=tvm, rtt_ns=rtt_ns_to(ctx, vm, np.full(len(t), tvm), np.full(len(t), ip)), mss=1460,
        rounds=0, req_bytes=0, resp_bytes=0, outcome=outcome, syn_retries=np.where(dropped, retries, 0),
    )  # fmt: skip
    detail = f"target={ipv4_text(ip)} ports={len(t)} open={int(is_open.sum())}"
    return conns, [compromise_label(ctx, vm, "port_scan_vertical", s, finished_by(conns, e), detail)]


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
    known = ("port", "hosts", "rate_pps", "external", "retries", "open_fraction", "reject_fraction")
    reject_unknown_params(params, "port_scan_horizontal", known)
    s, e = clip_to_scenario(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    port = port_param(params, "port", (22, 445), ctx)
    n_hosts = int(param(params, "hosts", 254, int))
    if not 1 <= n_hosts <= 1 << 20:
        raise ConfigError(f"event parameter hosts={n_hosts}: must be within 1..{1 << 20}")
    rate = positive("rate_pps", param(params, "rate_pps", 20.0))
    retries = int(param(params, "retries", 0, int))
    external = bool_param(params, "external", False)
    base = (int(internet_hosts(ctx)[0]) if external else int(c.ip[vm])) & 0xFFFFFF00
    k = np.arange(n_hosts + n_hosts // 254 + 2, dtype=np.int64)
    addr = base + (k // 254) * 256 + k % 254 + 1  # .1 … .254 of each /24
    addr = addr[(addr != int(c.ip[vm])) & (addr < 1 << 32)][:n_hosts]
    t = paced_times(ctx, len(addr), rate, s, e)
    addr = addr[: len(t)].astype(np.uint32)
    n = len(t)
    server_vm = np.full(n, -1 if external else vm, dtype=np.int64)
    if external:
        u = rng.random(n)
        open_f = fraction("open_fraction", param(params, "open_fraction", 0.02))
        rej_f = fraction("reject_fraction", param(params, "reject_fraction", 0.05))
        closed = np.where(u < open_f + rej_f, OUTCOME_REJECT, OUTCOME_NO_ANSWER)
        outcome = np.where(u < open_f, OUTCOME_OPEN_RST, closed)
    else:
        peers = vpc_peers(ctx, vm)
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
        client_vm=vm, server_vm=server_vm, rtt_ns=rtt_ns_to(ctx, vm, np.where(server_vm == vm, -1, server_vm), addr),
        mss=1460, rounds=0, req_bytes=0, resp_bytes=0, outcome=outcome, syn_retries=np.where(unanswered, retries, 0),
    )  # fmt: skip
    detail = f"port={port} hosts={n} from={ipv4_text(base)}/24 answered={int((~unanswered).sum())}"
    return conns, [compromise_label(ctx, vm, "port_scan_horizontal", s, finished_by(conns, e), detail)]
