"""Benign tenant traffic: what each VM role does on an ordinary day, as connections.

:func:`benign_connections` produces every benign connection of the scenario's whole duration
``[ctx.t0, ctx.t1)``, one vectorized :meth:`ConnTable.make` per traffic class. Arrivals are Poisson
(superposed over the source VMs, each arrival then assigned to a VM in proportion to its rate);
backups are periodic. Every rate below is multiplied by the source VM's ``tenant.rate`` and by the
scenario's ``benign_rate``. Sizes are heavy-tailed (lognormal, clipped). ``ctx.rng`` is the only
source of randomness, drawn in a fixed order: the same seed gives the same table.

=======  ==============================  ========================  ==================  ==============================
class    who → whom                      rate (per source VM)      port / app          sizes: median (lognormal σ)
=======  ==============================  ========================  ==================  ==============================
web_in   internet client → ``web``       1.6 conn/s                443 TLS (70 %),     req 450 B (0.4), resp 6 kB
                                                                   80 HTTP             (1.6); 1–20 rounds (mean 1.8)
web_app  ``web`` → ``app`` of its VPC    2.0 conn/s                8080 HTTP           req 600 B, resp 2.5 kB (1.3)
app_db   ``app`` → ``db`` of its VPC     1.2 conn/s                5432 SQL            resp 1.2 kB (1.6); 2–60
                                                                                       rounds (mean 7.7)
app_api  ``app`` → internet API          0.5 conn/s                443 TLS             req 800 B, resp 4 kB (1.4)
dns      every VM → ``dns`` of its VPC   U(0.1, 0.5) q/s per VM    UDP 53 DNS          query 45 B, answer +80 B
         (else a public resolver)
dns_fwd  ``dns`` → public resolver       30 % of its queries       UDP 53 DNS          as the query forwarded
backup   ``batch`` → ``db`` of its VPC   every 300 s (± 5 %,       873 rsync, 22 SSH,  upload 30 MB (0.7),
         (60 %) or an internet host      random phase)             443 TLS             clipped to 10–400 MB
ssh      ``admin`` → VM of its VPC       1/60 session/s            22 SSH              150 rounds (0.6), think 1.2 s
                                                                                       (0.5): minutes long
icmp     ``admin`` → VM of its VPC       1/60 ping/s               ICMP echo           1 + Poisson(3) echoes, 1 s
habits   every VM (its own mix)          timers, keep-alives,      NTP 123, 80, 443,   see :mod:`.habits`
                                         pollers, CDN bursts,      445 SMB, refused /
                                         SMB, failed attempts      timed-out / UDP
p2p      ``p2p`` VMs (+5 % of others)    U(0.1, 0.5) attempts/s,   8333, 6881–6889,    see :mod:`.p2p`; 50–90 % of
                                         most failing              DHT UDP             attempts fail
browse   ``desktop`` → internet sites    0.2 conn/s                443 TLS             see :mod:`.p2p`
=======  ==============================  ========================  ==================  ==============================

``habits`` and ``p2p`` run unless the scenario sets ``habits: false``; ``desktop`` VMs always have the client
habits (poller, CDN bursts, SMB). Internet paths also get ambient loss and reordering (:mod:`.paths`, scenario
option ``ambient_impairments``).

With these rates a 60 s, 10-VM cloud of mixed roles makes ~27–42k packets (more when a backup runs:
~15–300k packets each) and a 10-minute, 50-VM cloud ~2M (~75 packets per VM-second). Habits and p2p add
~8 % (an hour of ``mixed``: 26.9M packets over its three capture points, 24.8M without).

Internet clients are drawn with a Zipf-like popularity over ``ctx.cloud.external``; the first two
external hosts act as public resolvers, the next few as API endpoints, the last two as backup
targets. ``vni`` is the overlay id of the VM end's VPC (of the client when both ends are VMs).
"""

from __future__ import annotations

import numpy as np

from netsentry.pipeline.simulate.conns import (
    APP_DNS,
    APP_HTTP,
    APP_NONE,
    APP_SQL,
    APP_SSH,
    APP_TLS,
    OUTCOME_FIN,
    OUTCOME_RST_CLIENT,
    ConnTable,
    concat,
)
from netsentry.pipeline.simulate.events import MS, S, SimContext
from netsentry.pipeline.simulate.habits import habit_connections
from netsentry.pipeline.simulate.p2p import p2p_connections

KB = 1000
MB = 1000 * KB

RATES: dict[str, float] = {
    "web_in": 1.6,  # conn/s per web VM
    "web_app": 2.0,  # conn/s per web VM (with an app VM in its VPC)
    "app_db": 1.2,  # conn/s per app VM (with a db VM in its VPC)
    "app_api": 0.5,  # conn/s per app VM
    "dns_min": 0.1,  # q/s per VM, drawn uniformly in [dns_min, dns_max]
    "dns_max": 0.5,
    "dns_forward": 0.3,  # share of a dns VM's queries forwarded to an internet resolver
    "backup_period_s": 300.0,  # per batch VM
    "ssh": 1 / 60,  # sessions/s per admin VM
    "icmp": 1 / 60,  # pings/s per admin VM
}
"""Default rates at ``tenant.rate = benign_rate = 1`` (see the module docstring)."""

HTTPS_SHARE = 0.7
DB_PORTS = (5432, 5432)  # PostgreSQL: its messages are framed per segment in payloads.py


def benign_connections(ctx: SimContext) -> ConnTable:
    """All benign connections of the scenario, ordered by start time."""
    m = _Model(ctx)
    tables = [m.web_in(), m.web_app(), m.app_db(), m.app_api(), m.dns(), m.backup(), m.ssh(), m.icmp()]
    if ctx.scenario.habits:
        tables += [habit_connections(ctx, m.mult), p2p_connections(ctx, m.mult)]
    return concat(tables)


def vm_multipliers(ctx: SimContext) -> np.ndarray:
    """Per VM: its tenant's ``rate`` × the scenario's ``benign_rate`` × its own load, lognormal with mean 1 and
    log-sd ``vm_load_sigma`` (0.5: ±2σ spans ×0.33–2.4; two web servers of one tenant are not equally busy, so a
    rate seen on one VM is ordinary on another)."""
    rate = {t.name: t.rate for t in ctx.scenario.cloud.tenants}
    mult = np.array([rate[t] for t in ctx.cloud.tenant], dtype=np.float64) * ctx.scenario.benign_rate
    sigma = ctx.scenario.vm_load_sigma
    if sigma > 0:
        mult = mult * np.exp(ctx.rng.normal(-0.5 * sigma * sigma, sigma, len(mult)))
    return mult


class _Model:
    """Precomputed cloud structure (VPC groups, peers per role) plus one method per traffic class."""

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        self.rng = ctx.rng
        cloud = ctx.cloud
        self.n = len(cloud)
        self.mult = vm_multipliers(ctx)
        _, self.vpc = np.unique(np.array(cloud.vpc, dtype=object), return_inverse=True)
        self.role = cloud.role
        ext = cloud.external
        self.ext = ext
        self.resolvers = ext[:2]
        self.apis = ext[2 : 2 + max(1, min(8, len(ext) // 20))]
        self.backup_hosts = ext[-2:]
        # Zipf-like popularity of internet clients (a random rank per address)
        rank = self.rng.permutation(len(ext))
        w = 1.0 / (rank + 1.0) ** 0.9
        self.client_p = w / w.sum()
        # each db VM speaks PostgreSQL or MySQL
        self.db_port = np.where(self.rng.random(self.n) < 0.5, DB_PORTS[0], DB_PORTS[1]).astype(np.uint16)
        self.mss_vm = 1398 if cloud.overlay else 1448

    # ------------------------------------------------------------------ helpers

    def peers(self, role: str | None) -> tuple[np.ndarray, np.ndarray]:
        """Padded matrix of candidate peers per VM (same VPC, not itself, of ``role`` or any) and counts."""
        same = self.vpc[:, None] == self.vpc[None, :]
        np.fill_diagonal(same, False)
        if role is not None:
            same &= (self.role == role)[None, :]
        k = same.sum(axis=1)
        width = max(1, int(k.max()) if self.n else 1)
        mat = np.zeros((self.n, width), dtype=np.int64)
        for i in np.flatnonzero(k):  # one row per VM, not per connection
            mat[i, : k[i]] = np.flatnonzero(same[i])
        return mat, k

    def pick(self, mat: np.ndarray, k: np.ndarray, src: np.ndarray) -> np.ndarray:
        """One random peer per connection of source VMs ``src``."""
        j = (self.rng.random(len(src)) * k[src]).astype(np.int64)
        return mat[src, j]

    def arrivals(self, rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Poisson arrivals of all VMs with per-VM ``rate`` (conn/s): times and the source VM of each."""
        total = float(rate.sum())
        if total <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        t = self.ctx.poisson_times(total, self.ctx.t0, self.ctx.t1)
        src = self.rng.choice(self.n, size=len(t), p=rate / total)
        return t, src.astype(np.int64)

    def lognormal(self, median: float, sigma: float, n: int, lo: float, hi: float) -> np.ndarray:
        return np.clip(self.rng.lognormal(np.log(median), sigma, n), lo, hi).astype(np.int64)

    def rounds(self, p: float, n: int, hi: int, base: int = 0) -> np.ndarray:
        """``base`` + geometric(p) rounds (≥ 1), capped at ``hi``."""
        return np.minimum(base + self.rng.geometric(p, n), hi).astype(np.int32)

    def internet_clients(self, n: int) -> np.ndarray:
        return self.ext[self.rng.choice(len(self.ext), size=n, p=self.client_p)]

    def any_of(self, addrs: np.ndarray, n: int) -> np.ndarray:
        return addrs[self.rng.integers(0, len(addrs), n)]

    # ------------------------------------------------------------------ traffic classes

    def web_in(self) -> ConnTable:
        """Internet clients fetching pages from web VMs (keep-alive: a few requests per connection)."""
        rng, cloud = self.rng, self.ctx.cloud
        t, vm = self.arrivals(RATES["web_in"] * self.mult * (self.role == "web"))
        n = len(t)
        client = self.internet_clients(n)
        tls = rng.random(n) < HTTPS_SHARE
        return ConnTable.make(
            n,
            start_ns=t,
            client=client,
            server=cloud.ip[vm],
            cport=self.ctx.ephemeral_ports(n),
            sport=np.where(tls, 443, 80),
            vni=cloud.vni[vm],
            client_vm=-1,
            server_vm=vm,
            rtt_ns=self.ctx.external_rtt_ns(client),
            mss=np.minimum(self.mss_vm, rng.choice(np.array([1460, 1448, 1380, 1360]), n)),
            rounds=self.rounds(0.55, n, 20),
            req_bytes=self.lognormal(450, 0.4, n, 150, 8 * KB),
            resp_bytes=self.lognormal(6 * KB, 1.6, n, 200, 20 * MB),
            think_ns=self.lognormal(300 * MS, 1.0, n, 1 * MS, 10 * S),
            server_ns=self.lognormal(2 * MS, 0.8, n, 100_000, 500 * MS),
            outcome=np.where(rng.random(n) < 0.02, OUTCOME_RST_CLIENT, OUTCOME_FIN),
            app=np.where(tls, APP_TLS, APP_HTTP),
        )

    def web_app(self) -> ConnTable:
        """Web VMs calling the app tier of their VPC."""
        mat, k = self.peers("app")
        t, src = self.arrivals(RATES["web_app"] * self.mult * ((self.role == "web") & (k > 0)))
        dst = self.pick(mat, k, src)
        n = len(t)
        return self.internal(
            t, src, dst, 8080, APP_HTTP,
            rounds=self.rounds(0.5, n, 10),
            req_bytes=self.lognormal(600, 0.6, n, 100, 64 * KB),
            resp_bytes=self.lognormal(2500, 1.3, n, 100, 5 * MB),
            think_ns=self.lognormal(5 * MS, 1.0, n, 100_000, 1 * S),
            server_ns=self.lognormal(3 * MS, 1.0, n, 100_000, 1 * S),
        )  # fmt: skip

    def app_db(self) -> ConnTable:
        """App VMs querying their VPC's databases: several rounds per connection."""
        mat, k = self.peers("db")
        t, src = self.arrivals(RATES["app_db"] * self.mult * ((self.role == "app") & (k > 0)))
        dst = self.pick(mat, k, src)
        n = len(t)
        return self.internal(
            t, src, dst, self.db_port[dst], APP_SQL,
            rounds=self.rounds(0.15, n, 60, base=1),
            req_bytes=self.lognormal(250, 0.7, n, 40, 16 * KB),
            resp_bytes=self.lognormal(1200, 1.6, n, 20, 8 * MB),
            think_ns=self.lognormal(2 * MS, 1.0, n, 50_000, 500 * MS),
            server_ns=self.lognormal(1 * MS, 1.0, n, 50_000, 1 * S),
        )  # fmt: skip

    def app_api(self) -> ConnTable:
        """App VMs calling external HTTPS APIs."""
        rng, cloud = self.rng, self.ctx.cloud
        t, vm = self.arrivals(RATES["app_api"] * self.mult * (self.role == "app"))
        n = len(t)
        server = self.any_of(self.apis, n)
        return ConnTable.make(
            n,
            start_ns=t,
            client=cloud.ip[vm],
            server=server,
            cport=self.ctx.ephemeral_ports(n),
            sport=443,
            vni=cloud.vni[vm],
            client_vm=vm,
            server_vm=-1,
            rtt_ns=self.ctx.external_rtt_ns(server),
            mss=self.mss_vm,
            rounds=rng.integers(1, 4, n),
            req_bytes=self.lognormal(800, 0.5, n, 200, 64 * KB),
            resp_bytes=self.lognormal(4 * KB, 1.4, n, 100, 10 * MB),
            think_ns=self.lognormal(20 * MS, 1.0, n, 1 * MS, 2 * S),
            server_ns=self.lognormal(30 * MS, 0.7, n, 2 * MS, 2 * S),
            app=APP_TLS,
        )

    def dns(self) -> ConnTable:
        """Every VM resolves names: at its VPC's dns VM (which forwards cache misses) or a public resolver."""
        rng, cloud, ctx = self.rng, self.ctx.cloud, self.ctx
        mat, k = self.peers("dns")
        qrate = rng.uniform(RATES["dns_min"], RATES["dns_max"], self.n) * self.mult * (self.role != "dns")
        t, src = self.arrivals(qrate)
        n = len(t)
        local = k[src] > 0
        dns_vm = np.where(local, self.pick(mat, k, src), -1)
        resolver = self.any_of(self.resolvers, n)
        server = np.where(local, cloud.ip[np.maximum(dns_vm, 0)], resolver)
        rtt = np.where(local, ctx.vm_rtt_ns(src, np.maximum(dns_vm, 0)), ctx.external_rtt_ns(resolver))
        req = self.lognormal(45, 0.25, n, 28, 250)
        resp = req + self.lognormal(80, 0.6, n, 16, 400)
        server_ns = np.where(local, self.lognormal(100_000, 0.5, n, 20_000, 5 * MS),
                             self.lognormal(1 * MS, 0.8, n, 100_000, 200 * MS))  # fmt: skip
        # a local server forwards cache misses: the answer waits for the upstream round trip
        fwd = local & (rng.random(n) < RATES["dns_forward"])
        fi = np.flatnonzero(fwd)
        up = self.any_of(self.resolvers, len(fi))
        up_rtt = ctx.external_rtt_ns(up)
        up_server = self.lognormal(1 * MS, 0.8, len(fi), 100_000, 200 * MS)
        fwd_start = t[fi] + rtt[fi] // 2 + 20_000
        server_ns[fi] += 20_000 + up_rtt + up_server
        queries = ConnTable.make(
            n,
            start_ns=t,
            proto=17,
            client=cloud.ip[src],
            server=server,
            cport=ctx.ephemeral_ports(n),
            sport=53,
            vni=cloud.vni[src],
            client_vm=src,
            server_vm=dns_vm,
            rtt_ns=rtt,
            req_bytes=req,
            resp_bytes=resp,
            server_ns=server_ns,
            syn_retries=0,
            app=APP_DNS,
        )
        fv = dns_vm[fi]
        forwards = ConnTable.make(
            len(fi),
            start_ns=fwd_start,
            proto=17,
            client=cloud.ip[fv],
            server=up,
            cport=ctx.ephemeral_ports(len(fi)),
            sport=53,
            vni=cloud.vni[fv],
            client_vm=fv,
            server_vm=-1,
            rtt_ns=up_rtt,
            req_bytes=req[fi] + 11,  # EDNS0 OPT record
            resp_bytes=resp[fi] + 11,
            server_ns=up_server,
            syn_retries=0,
            app=APP_DNS,
        )
        return concat([queries, forwards])

    def backup(self) -> ConnTable:
        """Batch VMs uploading backups periodically (random phase, ±5 % jitter) to a db VM or an internet host."""
        rng, cloud, ctx = self.rng, self.ctx.cloud, self.ctx
        mat, k = self.peers("db")
        span = ctx.t1 - ctx.t0
        times, srcs = [], []
        for vm in np.flatnonzero((self.role == "batch") & (self.mult > 0)):  # a handful of VMs
            period = RATES["backup_period_s"] * S / self.mult[vm]
            phase = rng.random() * period
            kmax = int((span - phase) // period) + 1
            tt = ctx.t0 + phase + np.arange(kmax) * period + rng.normal(0, 0.05 * period, kmax)
            tt = tt[(tt >= ctx.t0) & (tt < ctx.t1)].astype(np.int64)
            times.append(tt)
            srcs.append(np.full(len(tt), vm, np.int64))
        t = np.concatenate(times) if times else np.zeros(0, np.int64)
        src = np.concatenate(srcs) if srcs else np.zeros(0, np.int64)
        n = len(t)
        to_db = (k[src] > 0) & (rng.random(n) < 0.6)
        db = np.where(to_db, self.pick(mat, k, src), -1)
        ext = self.any_of(self.backup_hosts, n)
        server = np.where(to_db, cloud.ip[np.maximum(db, 0)], ext)
        alt = rng.random(n) < 0.5
        sport = np.where(to_db, np.where(alt, 873, 22), np.where(alt, 443, 22))
        app = np.where(sport == 873, APP_NONE, np.where(sport == 22, APP_SSH, APP_TLS))
        rtt = np.where(to_db, ctx.vm_rtt_ns(src, np.maximum(db, 0)), ctx.external_rtt_ns(ext))
        return ConnTable.make(
            n,
            start_ns=t,
            client=cloud.ip[src],
            server=server,
            cport=ctx.ephemeral_ports(n),
            sport=sport,
            vni=cloud.vni[src],
            client_vm=src,
            server_vm=db,
            rtt_ns=rtt,
            mss=self.mss_vm,
            rounds=1,
            req_bytes=self.lognormal(30 * MB, 0.7, n, 10 * MB, 400 * MB),
            resp_bytes=self.lognormal(200, 0.5, n, 40, 4 * KB),
            server_ns=self.lognormal(5 * MS, 0.5, n, 1 * MS, 100 * MS),
            app=app,
        )

    def ssh(self) -> ConnTable:
        """Admins' interactive SSH sessions: many small rounds, seconds of think time, minutes long."""
        mat, k = self.peers(None)
        t, src = self.arrivals(RATES["ssh"] * self.mult * ((self.role == "admin") & (k > 0)))
        dst = self.pick(mat, k, src)
        n = len(t)
        return self.internal(
            t, src, dst, 22, APP_SSH,
            rounds=self.lognormal(150, 0.6, n, 10, 3000),
            req_bytes=self.lognormal(48, 0.3, n, 36, 1 * KB),
            resp_bytes=self.lognormal(120, 1.2, n, 36, 64 * KB),
            think_ns=self.lognormal(1200 * MS, 0.5, n, 100 * MS, 20 * S),
            server_ns=self.lognormal(300_000, 0.8, n, 50_000, 50 * MS),
        )  # fmt: skip

    def icmp(self) -> ConnTable:
        """Admins pinging VMs of their VPC (echo request/reply, one a second)."""
        mat, k = self.peers(None)
        t, src = self.arrivals(RATES["icmp"] * self.mult * ((self.role == "admin") & (k > 0)))
        dst = self.pick(mat, k, src)
        n = len(t)
        return self.internal(
            t, src, dst, 0, APP_NONE, proto=1,
            cport=self.rng.integers(1, 65536, n),  # echo identifier
            rounds=1 + self.rng.poisson(3, n),
            req_bytes=56, resp_bytes=56, think_ns=1 * S, server_ns=20_000, syn_retries=0,
        )  # fmt: skip

    def internal(self, t: np.ndarray, src: np.ndarray, dst: np.ndarray, sport: object, app: int,
                 **cols: object) -> ConnTable:  # fmt: skip
        """Connections between VMs ``src`` → ``dst`` of one VPC."""
        cloud, ctx = self.ctx.cloud, self.ctx
        n = len(t)
        if "cport" not in cols:
            cols["cport"] = ctx.ephemeral_ports(n)
        cols.setdefault("mss", self.mss_vm)
        return ConnTable.make(
            n,
            start_ns=t,
            client=cloud.ip[src],
            server=cloud.ip[dst],
            sport=sport,
            vni=cloud.vni[src],
            client_vm=src,
            server_vm=dst,
            rtt_ns=ctx.vm_rtt_ns(src, dst),
            app=app,
            **cols,
        )
