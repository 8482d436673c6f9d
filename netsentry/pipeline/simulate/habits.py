"""Per-VM habits: the ordinary background of real hosts, drawn per VM so that each VM has its own mix.

Why: a detector that never saw timers, idle sessions or failed connections calls every real host anomalous.
Each habit is drawn per VM (with the probability below; ``desktop`` VMs always have the client habits) and
scaled by the VM's ``tenant.rate × benign_rate`` (a VM with multiplier 0 has no habits). Periods are fixed
(timers do not speed up with load); Poisson rates are multiplied. ``ctx.rng`` only, in a fixed order; ``fanout``
draws from its own :meth:`~netsentry.pipeline.simulate.events.SimContext.stream`.

=========  =============  ===================================================  =====================================
habit      P(VM has it)   what                                                 why these constants
=========  =============  ===================================================  =====================================
timer      1 (1–4 kinds)  NTP UDP 123 every 64·2^k s (k 0–4); connectivity     NTP's poll range is 2^6–2^10 s;
                          check HTTP 80 every 300 s; update poll TLS 443       OS/agent checks use round periods
                          every 60/300/3600 s; agent heartbeat every 10–60 s   (±0.2 % jitter: crystal clocks)
                          (70 % of heartbeats over one kept-alive connection)
keepalive  0.5 (1–2)      one long-lived TLS/DoH session (443), keep-alive     HTTP/2 / TLS idle pings every
                          of ~40–100 B every U(30, 120) s, open at the end     30–120 s keep NAT state alive
poll       0.15           one server (internet or VPC peer) polled every       HTTP clients keep a connection
                          U(2, 10) s: 70 % over one kept-alive connection,     below the server's idle timeout
                          30 % a new short connection each time (curl loops)   (75 s); one-shot tools do not
cdn        0.2            bursts (one per U(5, 15) min): 10–20 HTTPS           a video/web client opens one
                          connections to 10–20 distinct servers in ~3 s        connection per CDN edge
smb        0.2            one SMB session (445) to a VPC peer: bursts of       file shares idle for minutes between
                          3–12 requests, idle gaps ~2 min (lognormal)          a user's operations
directory  0.1            a refresh every ~2 min (Poisson): 3–6 short          domain members talk to their
                          connections within 2 s to one VPC peer (the          directory server on LDAP,
                          VPC's directory server) on 389/445/135/3268/636      SMB and RPC all day long
fanout     0.3 (web and   a query job every ~4 min (Poisson): 1–10 rounds      partition/aggregate services (search,
           app VMs with   ~1 s apart, each round one short request to 3–12     feeds, sharded caches) ask many
           ≥ 3 peers)     VPC peers on 8080 at once (responses 4–64 kB)        backends at once: a backend sees a
                                                                               new caller's burst of connections
failed     1              ~1/300 s per VM (lognormal σ 0.7 across VMs):        closed ports and dead peers exist:
                          refused (RST), timed out (SYN retried 1, 2 s),       one failure alone is ordinary
                          unanswered UDP; half to VPC peers, half internet
health     0.5 (web, app  1–3 checkers probe the VM's service port every       load balancers (HAProxy ``inter 2s``,
           and db VMs)    2/5/10/15/30 s: a bare TCP connect closed by the     cloud LBs 5–30 s, kubelet probes
                          checker (RST or FIN; 60 %) or an HTTP GET of a       10 s) check every backend all day:
                          health page; web VMs from internet probers, app      a server takes repeated connections
                          and db VMs from a web/app peer (a proxy) or probers  that say little or nothing
=========  =============  ===================================================  =====================================

Peer-to-peer clients and desktop browsing are in :mod:`netsentry.pipeline.simulate.p2p`.
"""

from __future__ import annotations

import numpy as np

from netsentry.pipeline.simulate.conns import (
    APP_HTTP,
    APP_NONE,
    APP_TLS,
    OUTCOME_FIN,
    OUTCOME_NO_ANSWER,
    OUTCOME_OPEN,
    OUTCOME_REJECT,
    OUTCOME_RST_CLIENT,
    ConnTable,
    concat,
)
from netsentry.pipeline.simulate.events import MS, S, SimContext

KB = 1000
HABIT_P: dict[str, float] = {"keepalive": 0.5, "poll": 0.15, "cdn": 0.2, "smb": 0.2, "directory": 0.1}
"""Probability that a VM has each optional habit (timers and failed connections: every VM)."""
CLIENT_HABITS = ("poll", "cdn", "smb", "directory")
"""Habits every ``desktop`` VM has."""
FANOUT_P = 0.3
"""Probability that a web or app VM aggregates (drawn from the habit's own stream: :meth:`SimContext.stream`)."""
FANOUT_ROLES = ("web", "app")
"""Roles that may aggregate: only they fan a query out to their VPC's backends."""
FANOUT_EVERY_S = 240.0
"""Mean gap between an aggregator's query jobs."""
DIRECTORY_PORTS = np.array([389, 445, 135, 3268, 636], dtype=np.int64)
"""LDAP, SMB, RPC endpoint mapper, global catalog, LDAPS: a domain member's conversation with its DC (Kerberos,
88, is left out: its payloads are opaque here, and tshark's KRB5 dissector rejects them)."""
DIRECTORY_EVERY_S = 120.0
"""Mean gap between a member's directory refreshes (ticket renewals, group-policy and DFS lookups)."""
FAILED_PER_S = 1 / 300
"""Median rate of failed connections per VM (lognormal σ 0.7 across VMs)."""
SERVER_KEEPALIVE_S = 75.0
"""A poller whose period is shorter than a server's idle timeout (nginx's default ``keepalive_timeout``: 75 s)
keeps its connection, as HTTP clients do by default; one-shot tools (a curl loop) connect anew each time."""
REUSE_P = 0.7
"""Share of short-period pollers that reuse one connection."""
CLOSED_PORTS = np.array([8443, 9090, 3389, 5900, 6379, 9200, 27017, 8000, 5000, 1883], dtype=np.int64)
"""Ports a client may try on a peer that does not serve them (refused)."""
HEALTH_P = 0.5
"""Probability that a web, app or db VM is health-checked (drawn from the habit's own stream)."""
HEALTH_PORTS: dict[str, tuple[int, ...]] = {"web": (80, 443), "app": (8080,), "db": (5432,)}
"""The service port a checker probes, per role."""
HEALTH_PERIODS_S = np.array([2, 5, 10, 15, 30], dtype=np.float64)
"""Check intervals: HAProxy's default 2 s, kubelet's 10 s, cloud load balancers' 5–30 s."""
HEALTH_TCP_P = 0.6
"""Share of checks that only connect (HAProxy's and network load balancers' TCP checks) rather than GET a page."""
HEALTH_PROXY_P = 0.6
"""Share of checked app and db VMs whose checkers are a web or app peer (a proxy), not a load balancer's probers."""


def habit_connections(ctx: SimContext, mult: np.ndarray) -> ConnTable:
    """Every habit of every VM over the whole scenario (``mult``: per-VM rate multiplier, 0 = none)."""
    h = _Habits(ctx, mult)
    return concat([h.timers(), h.keepalive(), h.poll(), h.cdn(), h.smb(), h.directory(), h.fanout(), h.failed(),
                   h.health()])  # fmt: skip


class _Habits:
    """Which VM has which habit (drawn once), plus one method per habit."""

    def __init__(self, ctx: SimContext, mult: np.ndarray) -> None:
        self.ctx, self.rng, self.cloud = ctx, ctx.rng, ctx.cloud
        self.mult = mult
        self.n = len(ctx.cloud)
        self.ext = ctx.cloud.external
        _, self.vpc = np.unique(np.array(ctx.cloud.vpc, dtype=object), return_inverse=True)
        desktop = ctx.cloud.role == "desktop"
        self.has = {}
        for name, p in HABIT_P.items():
            drawn = self.rng.random(self.n) < p
            self.has[name] = (drawn | (desktop if name in CLIENT_HABITS else False)) & (mult > 0)
        self.mss = 1398 if ctx.cloud.overlay else 1448

    # ------------------------------------------------------------------ helpers

    def lognormal(self, median: float, sigma: float, n: int, lo: float, hi: float) -> np.ndarray:
        return np.clip(self.rng.lognormal(np.log(median), sigma, n), lo, hi).astype(np.int64)

    def periodic(self, period_ns: float, n_max: int | None = None, rng: np.random.Generator | None = None
                 ) -> np.ndarray:  # fmt: skip
        """Start times of a fixed-period timer (random phase, ±0.2 % jitter) inside the scenario."""
        ctx, rng = self.ctx, self.rng if rng is None else rng
        phase = rng.random() * period_ns
        k = int((ctx.t1 - ctx.t0 - phase) // period_ns) + 1
        if n_max is not None:
            k = min(k, n_max)
        t = ctx.t0 + phase + np.arange(k) * period_ns + rng.normal(0, 0.002 * period_ns, k)
        t = t.astype(np.int64)
        return t[(t >= ctx.t0) & (t < ctx.t1)]

    def peer_in_vpc(self, vm: int) -> int:
        """A random other VM of ``vm``'s VPC (-1 when alone)."""
        peers = np.flatnonzero((self.vpc == self.vpc[vm]) & (np.arange(self.n) != vm))
        return int(peers[self.rng.integers(len(peers))]) if len(peers) else -1

    def to_servers(self, t: np.ndarray, vm: np.ndarray, server_vm: np.ndarray, ext_ip: np.ndarray,
                   **cols: object) -> ConnTable:  # fmt: skip
        """Connections from VMs ``vm`` to a VPC peer (``server_vm >= 0``) or the internet address ``ext_ip``."""
        cloud, ctx = self.cloud, self.ctx
        n = len(t)
        internal = server_vm >= 0
        sv = np.maximum(server_vm, 0)
        rtt = np.where(internal, ctx.vm_rtt_ns(vm, sv), ctx.external_rtt_ns(ext_ip))
        if "cport" not in cols:  # no draw from ctx.rng when the caller brings its own ports
            cols["cport"] = ctx.ephemeral_ports(n)
        cols.setdefault("mss", self.mss)
        return ConnTable.make(
            n,
            start_ns=t,
            client=cloud.ip[vm],
            server=np.where(internal, cloud.ip[sv], ext_ip),
            vni=cloud.vni[vm],
            client_vm=vm,
            server_vm=np.where(internal, server_vm, -1),
            rtt_ns=rtt,
            **cols,
        )

    # ------------------------------------------------------------------ habits

    def timers(self) -> ConnTable:
        """1–4 fixed-period timers per VM: NTP, connectivity check, update poll, agent heartbeat."""
        rng = self.rng
        out = []
        for vm in np.flatnonzero(self.mult > 0):  # per timer, not per connection
            for kind in rng.permutation(4)[: 1 + min(3, rng.poisson(1.0))]:  # at most one timer of each kind
                server = self.ext[rng.integers(min(len(self.ext), 16))]  # a few well-known services
                if kind == 0:
                    t = self.periodic(64 * 2 ** rng.integers(5) * S)
                    cols = dict(proto=17, sport=123, req_bytes=48, resp_bytes=48, server_ns=1 * MS, syn_retries=0,
                                app=APP_NONE)  # fmt: skip
                elif kind == 1:
                    t = self.periodic(300 * S)
                    cols = dict(sport=80, req_bytes=90, resp_bytes=200, app=APP_HTTP)
                elif kind == 2:
                    t = self.periodic(float(rng.choice([60, 300, 3600])) * S)
                    resp = int(self.lognormal(2 * KB, 1.0, 1, 200, 200 * KB)[0])
                    cols = dict(sport=443, req_bytes=600, resp_bytes=resp, app=APP_TLS)
                else:  # an agent's heartbeat: below the keep-alive timeout, mostly over one connection
                    period = float(rng.choice([10, 15, 30, 60])) * S
                    t = self.periodic(period)
                    cols = dict(sport=443, req_bytes=int(rng.integers(300, 1500)), resp_bytes=120, app=APP_TLS)
                    if len(t) and rng.random() < REUSE_P:
                        t = t[:1]
                        cols.update(rounds=int((self.ctx.t1 - t[0]) // period) + 1, think_ns=int(period),
                                    outcome=OUTCOME_OPEN)  # fmt: skip
                n = len(t)
                out.append(self.to_servers(t, np.full(n, vm), np.full(n, -1), np.full(n, server, np.uint32), **cols))
        return concat(out)

    def keepalive(self) -> ConnTable:
        """Idle long-lived TLS/DoH sessions: tiny keep-alives every 30–120 s, still open at the end."""
        rng, ctx = self.rng, self.ctx
        vms = np.repeat(np.flatnonzero(self.has["keepalive"]), 1)
        vms = np.concatenate([vms, vms[rng.random(len(vms)) < 0.4]])  # some VMs keep two
        n = len(vms)
        interval = (rng.uniform(30, 120, n) * S).astype(np.int64)
        t = ctx.t0 + (rng.random(n) * np.minimum(interval, ctx.t1 - ctx.t0)).astype(np.int64)
        rounds = ((ctx.t1 - t) // interval + 2).astype(np.int32)
        ext = self.ext[rng.integers(0, min(len(self.ext), 32), n)]
        return self.to_servers(
            t, vms, np.full(n, -1), ext, sport=443, app=APP_TLS, outcome=OUTCOME_OPEN, rounds=rounds,
            req_bytes=rng.integers(39, 100, n), resp_bytes=rng.integers(39, 100, n), think_ns=interval,
            server_ns=self.lognormal(2 * MS, 0.5, n, 100_000, 50 * MS),
        )  # fmt: skip

    def poll(self) -> ConnTable:
        """A client polling one server every few seconds: over one kept-alive connection, or anew each time."""
        rng, ctx = self.rng, self.ctx
        out = []
        for vm in np.flatnonzero(self.has["poll"]):
            peer = self.peer_in_vpc(vm) if rng.random() < 0.4 else -1
            period = rng.uniform(2, 10) * S
            reuse = period < SERVER_KEEPALIVE_S * S and rng.random() < REUSE_P
            t = self.periodic(period, n_max=1 if reuse else None)
            n = len(t)
            ext = np.full(n, self.ext[rng.integers(len(self.ext))], np.uint32)
            port = int(rng.choice([80, 443, 8080]))
            rounds = (ctx.t1 - t) // int(period) + 1 if reuse else 1
            out.append(self.to_servers(
                t, np.full(n, vm), np.full(n, peer), ext, sport=port, app=APP_TLS if port == 443 else APP_HTTP,
                rounds=rounds, think_ns=int(period), outcome=OUTCOME_OPEN if reuse else OUTCOME_FIN,
                req_bytes=self.lognormal(300, 0.3, n, 100, 2 * KB), resp_bytes=self.lognormal(800, 0.8, n, 60, 50 * KB),
                server_ns=self.lognormal(5 * MS, 0.7, n, 200_000, 500 * MS),
            ))  # fmt: skip
        return concat(out)

    def cdn(self) -> ConnTable:
        """Video/web clients opening 10–20 HTTPS connections to 10–20 CDN servers within seconds."""
        rng, ctx = self.rng, self.ctx
        times, vms, servers = [], [], []
        for vm in np.flatnonzero(self.has["cdn"]):
            rate = self.mult[vm] / (rng.uniform(5, 15) * 60)
            for tb in ctx.poisson_times(rate, ctx.t0, ctx.t1):
                k = int(rng.integers(10, 21))
                times.append(tb + np.sort(rng.exponential(0.8 * S, k)).astype(np.int64))
                vms.append(np.full(k, vm))
                servers.append(self.ext[rng.choice(len(self.ext), size=min(k, len(self.ext)), replace=False)])
        if not times:
            return ConnTable()
        t, vm, ext = np.concatenate(times), np.concatenate(vms), np.concatenate(servers)
        n = len(t)
        return self.to_servers(
            t, vm, np.full(n, -1), ext, sport=443, app=APP_TLS, rounds=rng.integers(1, 4, n),
            req_bytes=self.lognormal(500, 0.3, n, 200, 4 * KB),
            resp_bytes=self.lognormal(300 * KB, 1.0, n, 2 * KB, 4000 * KB),
            think_ns=self.lognormal(2 * S, 0.7, n, 100 * MS, 10 * S), server_ns=self.lognormal(10 * MS, 0.7, n, MS, S),
        )  # fmt: skip

    def smb(self) -> ConnTable:
        """One SMB session per VM with the habit: request bursts separated by minutes of idle."""
        rng, ctx = self.rng, self.ctx
        vms = [vm for vm in np.flatnonzero(self.has["smb"])]
        peers = np.array([self.peer_in_vpc(vm) for vm in vms], dtype=np.int64)
        vm = np.array(vms, dtype=np.int64)[peers >= 0]
        peer = peers[peers >= 0]
        n = len(vm)
        burst = rng.integers(3, 13, n)
        idle = self.lognormal(120 * S, 0.8, n, 20 * S, 900 * S)
        t = ctx.t0 + (rng.random(n) * np.minimum(idle, ctx.t1 - ctx.t0)).astype(np.int64)
        rounds = (((ctx.t1 - t) // idle + 2) * burst).astype(np.int32)
        return self.to_servers(
            t, vm, peer, np.zeros(n, np.uint32), sport=445, app=APP_NONE, outcome=OUTCOME_OPEN, rounds=rounds,
            burst_rounds=burst, idle_ns=idle, think_ns=self.lognormal(20 * MS, 0.8, n, 1 * MS, 500 * MS),
            req_bytes=self.lognormal(200, 0.5, n, 70, 4 * KB), resp_bytes=self.lognormal(4 * KB, 1.5, n, 80, 1000 * KB),
            server_ns=self.lognormal(1 * MS, 0.8, n, 50_000, 100 * MS),
        )  # fmt: skip

    def directory(self) -> ConnTable:
        """Refreshes with the VPC's directory server: a few short connections on several of its ports at once."""
        rng, ctx = self.rng, self.ctx
        dc = {v: int(rng.choice(np.flatnonzero(self.vpc == v))) for v in np.unique(self.vpc)}
        vms = [vm for vm in np.flatnonzero(self.has["directory"]) if dc[self.vpc[vm]] != vm]
        out = []
        for vm in vms:
            t = ctx.poisson_times(float(self.mult[vm]) / DIRECTORY_EVERY_S, ctx.t0, ctx.t1)
            k = rng.integers(3, 7, len(t))
            starts = np.repeat(t, k) + (rng.random(int(k.sum())) * 2 * S).astype(np.int64)
            ports = np.concatenate([rng.choice(DIRECTORY_PORTS, size=int(j), replace=True) for j in k] or [[]])
            n = len(starts)
            out.append(self.to_servers(
                starts, np.full(n, vm), np.full(n, dc[self.vpc[vm]]), np.zeros(n, np.uint32),
                sport=ports.astype(np.int64), app=APP_NONE, rounds=rng.integers(1, 5, n),
                req_bytes=rng.integers(200, 1500, n), resp_bytes=rng.integers(200, 4000, n),
                server_ns=self.lognormal(1 * MS, 0.5, n, 100_000, 20 * MS),
            ))  # fmt: skip
        return concat(out)

    def fanout(self) -> ConnTable:
        """Partition/aggregate jobs: rounds of one short request to each of several VPC peers at once."""
        ctx = self.ctx
        rng = ctx.stream("fanout")
        aggregators = (rng.random(self.n) < FANOUT_P) & np.isin(self.cloud.role, FANOUT_ROLES) & (self.mult > 0)
        starts, clients, servers = [], [], []
        for vm in np.flatnonzero(aggregators):
            peers = np.flatnonzero((self.vpc == self.vpc[vm]) & (np.arange(self.n) != vm))
            if len(peers) < 3:
                continue
            for tj in ctx.poisson_times(float(self.mult[vm]) / FANOUT_EVERY_S, ctx.t0, ctx.t1, rng):
                backends = rng.choice(peers, size=min(len(peers), int(rng.integers(3, 13))), replace=False)
                rounds = int(rng.integers(1, 11))
                t_round = tj + np.cumsum(rng.uniform(0.5, 1.5, rounds) * S).astype(np.int64)
                k = len(backends)
                starts.append(np.repeat(t_round, k) + (rng.random(rounds * k) * 2 * MS).astype(np.int64))
                clients.append(np.full(rounds * k, vm))
                servers.append(np.tile(backends, rounds))
        if not starts:
            return ConnTable()
        t, vm, peer = np.concatenate(starts), np.concatenate(clients), np.concatenate(servers)
        keep = t < ctx.t1
        t, vm, peer = t[keep], vm[keep], peer[keep]
        n = len(t)
        resp = np.clip(rng.lognormal(np.log(16 * KB), 0.7, n), 4 * KB, 64 * KB).astype(np.int64)
        server_ns = np.clip(rng.lognormal(np.log(2 * MS), 0.7, n), 200_000, 50 * MS).astype(np.int64)
        return self.to_servers(
            t, vm, peer, np.zeros(n, np.uint32), sport=8080, app=APP_HTTP, cport=rng.integers(32768, 61000, n),
            req_bytes=rng.integers(100, 400, n), resp_bytes=resp, server_ns=server_ns,
        )  # fmt: skip

    def failed(self) -> ConnTable:
        """Refused (RST to the SYN), timed-out (SYN retried after 1 and 2 s) and unanswered UDP attempts."""
        rng, ctx = self.rng, self.ctx
        rate = np.exp(rng.normal(np.log(FAILED_PER_S), 0.7, self.n)) * self.mult
        total = float(rate.sum())
        if total <= 0:
            return ConnTable()
        t = ctx.poisson_times(total, ctx.t0, ctx.t1)
        n = len(t)
        vm = rng.choice(self.n, size=n, p=rate / total)
        to_peer = rng.random(n) < 0.5
        peer = np.array([self.peer_in_vpc(v) for v in vm], dtype=np.int64) if n else np.zeros(0, np.int64)
        peer = np.where(to_peer, peer, -1)
        ext = self.ext[rng.integers(0, len(self.ext), n)]
        kind = rng.random(n)  # < 0.45 refused, < 0.85 timed out, else unanswered UDP
        udp = kind >= 0.85
        port = np.where(peer >= 0, CLOSED_PORTS[rng.integers(0, len(CLOSED_PORTS), n)],
                        rng.choice(np.array([443, 80, 8080, 8443]), n))  # fmt: skip
        return self.to_servers(
            t, vm, peer, ext, proto=np.where(udp, 17, 6), sport=np.where(udp, 443, port), app=APP_NONE,
            outcome=np.where(kind < 0.45, OUTCOME_REJECT, np.where(udp, OUTCOME_FIN, OUTCOME_NO_ANSWER)),
            syn_retries=np.where(kind < 0.45, 0, 2), rounds=np.where(udp, rng.integers(1, 4, n), 1),
            think_ns=1 * S, req_bytes=np.where(udp, 1200, 300), resp_bytes=np.where(udp, 0, 300),
        )  # fmt: skip

    def health(self) -> ConnTable:
        """Load-balancer health checks: 1–3 checkers probe a server's port at a fixed period, all day long."""
        ctx = self.ctx
        rng = ctx.stream("health")
        role = self.cloud.role
        drawn = rng.random(self.n) < HEALTH_P
        out = []
        for vm in np.flatnonzero(drawn & np.isin(role, tuple(HEALTH_PORTS)) & (self.mult > 0)):
            ports = HEALTH_PORTS[str(role[vm])]
            port = int(ports[rng.integers(len(ports))])
            period = float(HEALTH_PERIODS_S[rng.integers(len(HEALTH_PERIODS_S))]) * S
            tcp = rng.random() < HEALTH_TCP_P
            from_peer = role[vm] != "web" and rng.random() < HEALTH_PROXY_P
            same_vpc = (self.vpc == self.vpc[vm]) & (np.arange(self.n) != vm)
            proxies = np.flatnonzero(same_vpc & np.isin(role, ("web", "app")))
            for _ in range(int(rng.integers(1, 4))):
                peer = int(proxies[rng.integers(len(proxies))]) if from_peer and len(proxies) else -1
                prober = int(self.ext[rng.integers(len(self.ext))])
                t = self.periodic(period, rng=rng)
                n = len(t)
                cols = dict(
                    sport=port, app=APP_NONE, rounds=0, req_bytes=0, resp_bytes=0, syn_retries=1,
                    outcome=OUTCOME_RST_CLIENT if rng.random() < 0.5 else OUTCOME_FIN,
                ) if tcp else dict(
                    sport=port, app=APP_HTTP if port != 443 else APP_TLS, rounds=1,
                    req_bytes=rng.integers(80, 160, n), resp_bytes=rng.integers(60, 400, n),
                    server_ns=np.clip(rng.lognormal(np.log(1 * MS), 0.5, n), 100_000, 20 * MS).astype(np.int64),
                )  # fmt: skip
                cols["cport"] = rng.integers(32768, 61000, n)  # from the habit's stream, not ctx.rng
                out.append(self._checks(t, peer, prober, vm, cols))
        return concat(out)

    def _checks(self, t: np.ndarray, peer: int, prober: int, vm: int, cols: dict[str, object]) -> ConnTable:
        """Connections from a checker (VPC peer ``peer`` when ≥ 0, else the internet address ``prober``) to ``vm``."""
        cloud, ctx = self.cloud, self.ctx
        n = len(t)
        internal = peer >= 0
        client = np.full(n, cloud.ip[peer] if internal else prober, np.uint32)
        rtt = ctx.vm_rtt_ns(np.full(n, peer), np.full(n, vm)) if internal else ctx.external_rtt_ns(client)
        cols.setdefault("mss", self.mss)
        return ConnTable.make(
            n, start_ns=t, client=client, server=np.full(n, cloud.ip[vm], np.uint32), vni=cloud.vni[vm],
            client_vm=peer if internal else -1, server_vm=vm, rtt_ns=rtt, **cols,
        )  # fmt: skip
