"""Peer-to-peer clients and desktop browsing: benign fan-out to many internet hosts.

Why: a Bitcoin node or a BitTorrent client contacts hundreds of peers and most attempts fail; without
them a scan is the only fan-out a detector ever saw.

=========  ==========================  ===================================================================
who        rate (× VM multiplier)      what
=========  ==========================  ===================================================================
p2p        U(0.1, 0.5) attempts/s      each ``p2p`` VM (and 5 % of other non-dns VMs) runs Bitcoin (8333) or
           outbound, 0.3× inbound      BitTorrent (6881–6889, 30 % random high ports; UDP DHT as many again)
                                       to fresh peers; a share U(0.5, 0.9) of attempts fail (70 % unanswered,
                                       SYN retried after 1 s; 30 % refused); 30 % of the others stay open
browse     0.2 conn/s                  each ``desktop`` VM: HTTPS to Zipf-popular sites, 1–6 requests each
=========  ==========================  ===================================================================
"""

from __future__ import annotations

import numpy as np

from netsentry.pipeline.simulate.conns import (
    APP_NONE,
    APP_TLS,
    OUTCOME_FIN,
    OUTCOME_NO_ANSWER,
    OUTCOME_OPEN,
    OUTCOME_REJECT,
    ConnTable,
    concat,
)
from netsentry.pipeline.simulate.events import MS, S, SimContext

KB = 1000
P2P_HABIT_P = 0.05
"""Share of non-``p2p``, non-dns VMs that also run a peer-to-peer client."""
BITCOIN_PORT = 8333
BITTORRENT_PORTS = (6881, 6890)  # the classic range [6881, 6889]
BROWSE_PER_S = 0.2

_BLOCKED = ((0x64400000, 10), (0x7F000000, 8), (0xA9FE0000, 16), (0xAC100000, 12), (0xC0A80000, 16))
"""100.64/10, 127/8, 169.254/16, 172.16/12, 192.168/16 (draws lie in 23.0.0.0–223.255.255.0: not 10/8, multicast)."""


def random_public(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` public IPv4 addresses (fresh peers; not .0/.255, not private or link-local)."""
    out = np.zeros(0, np.uint32)
    while len(out) < n:
        c = rng.integers(0x17000000, 0xDFFFFF00, 2 * n + 8, dtype=np.int64)
        ok = ((c & 0xFF) != 0) & ((c & 0xFF) != 255)
        for base, bits in _BLOCKED:
            ok &= (c >> (32 - bits)) != (base >> (32 - bits))
        out = np.concatenate([out, c[ok].astype(np.uint32)])
    return out[:n]


def p2p_connections(ctx: SimContext, mult: np.ndarray) -> ConnTable:
    """Peer-to-peer fan-out of every p2p VM, and desktop browsing."""
    rng, cloud = ctx.rng, ctx.cloud
    n_vm = len(cloud)
    habit = (rng.random(n_vm) < P2P_HABIT_P) & (cloud.role != "dns")
    runs = ((cloud.role == "p2p") | habit) & (mult > 0)
    out = [_peers(ctx, int(vm), float(mult[vm])) for vm in np.flatnonzero(runs)]
    out.append(_browse(ctx, mult))
    return concat(out)


def _peers(ctx: SimContext, vm: int, mult: float) -> ConnTable:
    """One VM's peer-to-peer client: outbound attempts (most fail), inbound peers, BitTorrent's UDP DHT."""
    rng, cloud = ctx.rng, ctx.cloud
    bitcoin = rng.random() < 0.5
    rate = rng.uniform(0.1, 0.5) * mult
    fail = rng.uniform(0.5, 0.9)
    tables = []
    for inbound in (False, True):
        t = ctx.poisson_times(rate * (0.3 if inbound else 1.0), ctx.t0, ctx.t1)
        n = len(t)
        peer = random_public(rng, n)
        if bitcoin:
            port = np.full(n, BITCOIN_PORT)
        else:
            port = np.where(rng.random(n) < 0.3, rng.integers(10000, 65000, n), rng.integers(*BITTORRENT_PORTS, n))
        r = rng.random(n)
        failed = (r < fail) & ~inbound
        outcome = np.where(failed, np.where(r < 0.7 * fail, OUTCOME_NO_ANSWER, OUTCOME_REJECT),
                           np.where(rng.random(n) < 0.3, OUTCOME_OPEN, OUTCOME_FIN))  # fmt: skip
        local_port = BITCOIN_PORT if bitcoin else int(rng.integers(*BITTORRENT_PORTS))
        ends = dict(client=peer, server=cloud.ip[vm], cport=ctx.ephemeral_ports(n), sport=local_port,
                    client_vm=-1, server_vm=vm) if inbound else \
            dict(client=cloud.ip[vm], server=peer, cport=ctx.ephemeral_ports(n), sport=port, client_vm=vm,
                 server_vm=-1)  # fmt: skip
        tables.append(ConnTable.make(
            n, start_ns=t, vni=cloud.vni[vm], rtt_ns=ctx.external_rtt_ns(peer), outcome=outcome,
            syn_retries=np.where(outcome == OUTCOME_NO_ANSWER, 1, 0), rounds=rng.geometric(0.2, n).clip(1, 60),
            req_bytes=np.clip(rng.lognormal(np.log(300), 1.0, n), 24, 64 * KB).astype(np.int64),
            resp_bytes=np.clip(rng.lognormal(np.log(2 * KB), 1.5, n), 24, 2000 * KB).astype(np.int64),
            think_ns=np.clip(rng.lognormal(np.log(5 * S), 1.0, n), 10 * MS, 120 * S).astype(np.int64),
            app=APP_NONE, **ends,
        ))  # fmt: skip
    if not bitcoin:  # DHT: one datagram per peer, answered unless the peer is gone
        t = ctx.poisson_times(rate, ctx.t0, ctx.t1)
        n = len(t)
        peer = random_public(rng, n)
        tables.append(ConnTable.make(
            n, start_ns=t, proto=17, client=cloud.ip[vm], server=peer, cport=ctx.ephemeral_ports(n),
            sport=rng.integers(1024, 65000, n), vni=cloud.vni[vm], client_vm=vm, server_vm=-1,
            rtt_ns=ctx.external_rtt_ns(peer), req_bytes=rng.integers(60, 120, n),
            resp_bytes=np.where(rng.random(n) < fail, 0, rng.integers(100, 400, n)), syn_retries=0, app=APP_NONE,
        ))  # fmt: skip
    return concat(tables)


def _browse(ctx: SimContext, mult: np.ndarray) -> ConnTable:
    """Desktop VMs browsing HTTPS sites (Zipf-popular), a few requests per connection."""
    rng, cloud = ctx.rng, ctx.cloud
    rate = BROWSE_PER_S * mult * (cloud.role == "desktop")
    total = float(rate.sum())
    if total <= 0:
        return ConnTable()
    t = ctx.poisson_times(total, ctx.t0, ctx.t1)
    n = len(t)
    vm = rng.choice(len(cloud), size=n, p=rate / total)
    ext = cloud.external
    w = 1.0 / (np.arange(len(ext)) + 1.0)
    site = ext[rng.choice(len(ext), size=n, p=w / w.sum())]
    return ConnTable.make(
        n, start_ns=t, client=cloud.ip[vm], server=site, cport=ctx.ephemeral_ports(n), sport=443,
        vni=cloud.vni[vm], client_vm=vm, server_vm=-1, rtt_ns=ctx.external_rtt_ns(site),
        rounds=rng.integers(1, 7, n),
        req_bytes=np.clip(rng.lognormal(np.log(500), 0.4, n), 150, 8 * KB).astype(np.int64),
        resp_bytes=np.clip(rng.lognormal(np.log(20 * KB), 1.5, n), 200, 5000 * KB).astype(np.int64),
        think_ns=np.clip(rng.lognormal(np.log(1 * S), 1.0, n), 10 * MS, 30 * S).astype(np.int64), app=APP_TLS,
    )  # fmt: skip
