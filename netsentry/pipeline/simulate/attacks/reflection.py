"""Reflection/amplification victims: a VM receives large UDP responses it never asked for, from thousands of
reflectors, all from one service port.

Why: the victim's evidence is many sources sharing one *remote* service port with no request of its own, so the
world must hold it for every abused service, not only DNS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.simulate.attacks.floods import _spoofed_sources
from netsentry.pipeline.simulate.attacks.helpers import (
    clip_to_scenario,
    compromise_label,
    finished_by,
    paced_times,
    positive,
    reject_unknown_params,
)
from netsentry.pipeline.simulate.conns import APP_DNS, APP_NONE, ConnTable
from netsentry.pipeline.simulate.events import MS, Label, SimContext, compromise, param


@dataclass(frozen=True)
class Reflector:
    """What one spoofed request makes a reflector send back: datagrams, their UDP payload sizes, their spacing."""

    port: int
    size: tuple[int, int]
    datagrams: tuple[int, int]
    gap_ns: int
    app: int = APP_NONE


MTU_PAYLOAD = 1472  # larger answers arrive as several MTU-sized datagrams
REFLECTORS: dict[str, Reflector] = {
    "dns": Reflector(53, (1200, MTU_PAYLOAD), (1, 3), 1 * MS, APP_DNS),  # ANY/DNSSEC answers, 28–54×
    "ntp": Reflector(123, (440, 468), (5, 100), 1 * MS),  # monlist: up to 100 datagrams of 6 entries (440 B)
    "snmp": Reflector(161, (800, MTU_PAYLOAD), (1, 2), 1 * MS),  # GetBulk answers, ~6×
    "cldap": Reflector(389, (1200, MTU_PAYLOAD), (2, 3), 1 * MS),  # rootDSE searchResEntry, 56–70×
    "ssdp": Reflector(1900, (250, 350), (3, 10), 5 * MS),  # one M-SEARCH answer per service type
    "memcached": Reflector(11211, (1300, 1400), (10, 100), 1 * MS),  # stats/get answers in 1400 B chunks
    "ike": Reflector(500, (200, 900), (3, 5), 1000 * MS),  # the responder re-sends its answer (1 s, 2 s, …)
    "ike-nat": Reflector(4500, (200, 900), (3, 5), 1000 * MS),
}
"""Per abused service (US-CERT TA14-017A amplification factors, the protocols' answer sizes)."""


@compromise("reflection")
def reflection(ctx: SimContext, vm: int, start_ns: int, end_ns: int, params: dict[str, Any]
               ) -> tuple[ConnTable, list[Label]]:  # fmt: skip
    """The VM is the victim of a reflection attack on ``service`` (``dns``; see :data:`REFLECTORS`).

    Params: ``reflectors`` (2000 public addresses), ``rate`` (500 triggering requests/s: each a reflector's
    burst of answers), ``max_requests`` (20000), ``victim_port`` (random: the spoofed source port; a number
    pins it, e.g. 80). Nothing is sent by the VM.
    """
    reject_unknown_params(params, "reflection", ("service", "reflectors", "rate", "max_requests", "victim_port"))
    s, e = clip_to_scenario(ctx, start_ns, end_ns)
    c, rng = ctx.cloud, ctx.rng
    name = str(params.get("service", "dns"))
    if name not in REFLECTORS:
        raise ConfigError(f"event parameter service={name!r}: expected one of {', '.join(REFLECTORS)}")
    ref = REFLECTORS[name]
    pool = _spoofed_sources(rng, max(1, int(param(params, "reflectors", 2000, int))))
    rate = positive("rate", param(params, "rate", 500.0))
    t = paced_times(ctx, max(1, int(param(params, "max_requests", 20_000, int))), rate, s, e, jitter=0.9)
    n = len(t)
    src = np.concatenate([pool, pool[rng.integers(0, len(pool), size=max(0, n - len(pool)))]])[:n]
    vport = params.get("victim_port", "random")
    if str(vport) == "random":
        dport = rng.integers(1024, 65536, size=n)
    elif 1 <= int(param(params, "victim_port", 0, int)) <= 65535:
        dport = np.full(n, int(vport))
    else:
        raise ConfigError(f"event parameter victim_port={vport!r}: a port number or random")
    conns = ConnTable.make(
        n, proto=17, start_ns=t, client=src, server=c.ip[vm], cport=ref.port, sport=dport, vni=c.vni[vm],
        client_vm=-1, server_vm=vm, rtt_ns=ctx.external_rtt_ns(src), rounds=rng.integers(*ref.datagrams, size=n,
        endpoint=True), req_bytes=rng.integers(*ref.size, size=n, endpoint=True), resp_bytes=0,
        think_ns=ref.gap_ns, app=ref.app,
    )  # fmt: skip
    detail = f"service={name} port={ref.port} reflectors={len(np.unique(src))} requests={n}"
    return conns, [compromise_label(ctx, vm, "reflection", s, finished_by(conns, e), detail)]
