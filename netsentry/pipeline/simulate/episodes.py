"""Generated episodes: many injected events drawn at random (target, time, intensity, tool), so a long history
holds each behaviour several times in its real variety instead of once as written by hand.

A scenario's ``episodes`` blocks name how many events of each type to draw between two times; every draw comes
from the block's own seed, so adding a block leaves the rest of the simulation byte-identical. Parameter ranges
are the tools' documented settings and the defaults of the behaviour generators (their docstrings say why).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.simulate.cloud import Cloud
from netsentry.pipeline.simulate.faults import CONFIG_ACTIONS, CONFIG_ANSWERS
from netsentry.pipeline.simulate.scenario import EpisodeBlock, EventSpec

Draw = Callable[[np.random.Generator], dict[str, Any]]

_NO_CLIENT_ROLES = ("p2p", "desktop")
"""Roles whose own habits already fan out and fail (a compromise drawn on them would be one label over two
behaviours); hand-written events may still target them."""


def _choice(rng: np.random.Generator, options: list[Any] | tuple[Any, ...]) -> Any:
    return options[int(rng.integers(0, len(options)))]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Rates span decades (slow-and-low to flat-out): uniform in log, rounded to 3 significant digits."""
    return float(f"{float(np.exp(rng.uniform(np.log(lo), np.log(hi)))):.3g}")


def _bruteforce(rng: np.random.Generator) -> dict[str, Any]:
    service = _choice(rng, ("ssh", "ftp", "telnet", "rdp", "mysql", "postgres", "mssql", "http-auth", "https-auth",
                            "smtp-auth", "custom"))  # fmt: skip
    p: dict[str, Any] = {"service": service, "role": _choice(rng, ("attacker", "victim"))}
    if service == "custom":
        p["port"] = int(rng.integers(1025, 65536))
    if p["role"] == "victim":
        p["sources"] = int(rng.integers(1, 4))
        p["rate"] = _log_uniform(rng, 0.3, 3.0)
    else:  # hydra/ncrack/medusa: -t threads, paced by the server's answer (sequential) or in parallel
        p["rate"] = _log_uniform(rng, 0.08, 2.0)
        if rng.random() < 0.6:
            p["pacing"] = "sequential"
            p["threads"] = int(rng.integers(1, 5))
    return p


def _ssh_bruteforce(rng: np.random.Generator) -> dict[str, Any]:
    p = _bruteforce(rng)
    p.pop("service")
    p.pop("port", None)
    return p


def _ping_sweep(rng: np.random.Generator) -> dict[str, Any]:
    p: dict[str, Any] = {"rate_pps": _log_uniform(rng, 10, 300), "external": bool(rng.random() < 0.4)}
    if rng.random() < 0.3:  # nmap -PS
        p.update(method="tcp", port=_choice(rng, (80, 443, 22)))
    else:  # nmap (new identifier per probe) or fping/ping loops (one identifier, re-sent)
        p["identifier"] = _choice(rng, ("varying", "constant"))
        p["retries"] = int(rng.integers(0, 4))
    return p


def _udp_sweep(rng: np.random.Generator) -> dict[str, Any]:
    if rng.random() < 0.5:
        return {"port": _choice(rng, (53, 123, 137, 161, 500, 1900)), "rate_pps": _log_uniform(rng, 10, 200),
                "external": bool(rng.random() < 0.3)}  # fmt: skip
    return {"mode": "ports", "ports": int(_choice(rng, (100, 300, 1000))), "rate_pps": _log_uniform(rng, 10, 100),
            "external": bool(rng.random() < 0.5)}  # fmt: skip


def _reflection(rng: np.random.Generator) -> dict[str, Any]:
    return {"service": _choice(rng, ("dns", "ntp", "snmp", "cldap", "ssdp", "memcached", "ike")),
            "rate": _log_uniform(rng, 30, 500)}  # fmt: skip


def _c2_beacon(rng: np.random.Generator) -> dict[str, Any]:
    # Cobalt Strike's default sleep is 60 s, Sliver's 60 s, Metasploit's 5–10 s; jitter 0–50 %
    return {"period_s": float(_choice(rng, (5, 10, 15, 20, 30, 45, 60))), "jitter": round(rng.uniform(0, 0.5), 2)}


def _exfiltration(rng: np.random.Generator) -> dict[str, Any]:
    return {"total_mb": _log_uniform(rng, 10, 200), "connections": int(rng.integers(1, 4))}


def _crypto_mining(rng: np.random.Generator) -> dict[str, Any]:
    # pools' vardiff aims at one share every 10–60 s; ports vary by pool (3333, 4444, 5555, 14444, 9999, 443)
    lo = round(float(rng.uniform(5, 30)), 1)
    return {"port": int(_choice(rng, (3333, 4444, 5555, 7777, 9999, 14444, 443))), "share_s": [lo, 2 * lo],
            "connections": int(_choice(rng, (1, 1, 2)))}  # fmt: skip


def _dns_tunnel(rng: np.random.Generator) -> dict[str, Any]:
    p: dict[str, Any] = {"tool": _choice(rng, ("iodine", "dnscat2", "dnstt"))}
    if p["tool"] == "iodine" and rng.random() < 0.3:
        p["server"] = "vm"
    return p


def _ddos_syn(rng: np.random.Generator) -> dict[str, Any]:
    p: dict[str, Any] = {"role": _choice(rng, ("attacker", "victim")), "rate": _log_uniform(rng, 300, 3000)}
    if rng.random() < 0.3:
        p["port"] = int(_choice(rng, (22, 25, 3306, 5432, 8080)))
    return p


def _ddos_udp(rng: np.random.Generator) -> dict[str, Any]:
    return {"rate": _log_uniform(rng, 300, 3000)}


def _port_scan_vertical(rng: np.random.Generator) -> dict[str, Any]:
    return {"ports": int(_choice(rng, (100, 300, 1000, 2000))), "rate_pps": _log_uniform(rng, 10, 300),
            "external": bool(rng.random() < 0.3)}  # fmt: skip


def _port_scan_horizontal(rng: np.random.Generator) -> dict[str, Any]:
    return {"port": int(_choice(rng, (22, 23, 80, 443, 445, 3389, 6379))), "rate_pps": _log_uniform(rng, 5, 200),
            "external": bool(rng.random() < 0.5)}  # fmt: skip


def _lateral_movement(rng: np.random.Generator) -> dict[str, Any]:
    return {"rate": _log_uniform(rng, 0.3, 4.0), "targets": int(rng.integers(2, 8))}


COMPROMISE_DRAWS: dict[str, tuple[Draw, tuple[float, float]]] = {
    "bruteforce": (_bruteforce, (40, 150)),
    "ssh_bruteforce": (_ssh_bruteforce, (40, 150)),
    "ping_sweep": (_ping_sweep, (15, 40)),
    "udp_sweep": (_udp_sweep, (20, 45)),
    "reflection": (_reflection, (8, 20)),
    "c2_beacon": (_c2_beacon, (150, 300)),
    "exfiltration": (_exfiltration, (40, 90)),
    "crypto_mining": (_crypto_mining, (150, 300)),
    "dns_tunnel": (_dns_tunnel, (60, 150)),
    "ddos_syn": (_ddos_syn, (10, 25)),
    "ddos_udp": (_ddos_udp, (10, 20)),
    "port_scan_vertical": (_port_scan_vertical, (20, 60)),
    "port_scan_horizontal": (_port_scan_horizontal, (30, 60)),
    "lateral_movement": (_lateral_movement, (30, 80)),
}
"""Per compromise type: its parameter draw and its duration range in seconds."""


def _fault_target(rng: np.random.Generator, cloud: Cloud, kind: str) -> str:
    host = cloud.host_name(int(rng.integers(0, cloud.n_hosts)))
    if kind == "blackhole" and cloud.n_hosts > 1:
        a, b = rng.choice(cloud.n_hosts, size=2, replace=False)
        return f"{cloud.host_name(int(a))}-{cloud.host_name(int(b))}"
    if kind in ("loss_burst", "latency_spike"):
        return "gateway" if rng.random() < 0.3 else host
    return ""  # a VM, chosen by the caller


def _silent_server(rng: np.random.Generator) -> dict[str, Any]:
    return {"port": int(_choice(rng, (443, 5432, 3306, 8080))), "rate": _log_uniform(rng, 0.1, 1.0)}


FAULT_DRAWS: dict[str, tuple[Draw, tuple[float, float]]] = {
    "loss_burst": (lambda r: {"loss_p": round(float(r.uniform(0.02, 0.1)), 3)}, (4, 10)),
    "latency_spike": (lambda r: {"delay_ms": round(float(r.uniform(30, 200)))}, (3, 8)),
    "blackhole": (lambda r: {}, (3, 6)),
    "microburst": (lambda r: {}, (1, 3)),
    "rst_storm": (lambda r: {"rate": _log_uniform(r, 20, 100)}, (5, 12)),
    "silent_server": (_silent_server, (20, 40)),
    "config_change": (lambda r: {"action": _choice(r, CONFIG_ACTIONS), "answer": _choice(r, CONFIG_ANSWERS)}, (3, 10)),
}
"""Per fault type: its parameter draw and its duration range in seconds."""

SHARED_STREAM = frozenset({"loss_burst", "latency_spike", "blackhole", "microburst", "rst_storm", "silent_server"})
"""Fault types drawn in name order from the block's stream; any other type draws from a stream of its own, so adding
one to a block leaves every other draw as it was."""


class _Calendar:
    """Busy intervals per VM: one drawn compromise per VM at a time, so a label names one behaviour."""

    def __init__(self, events: list[EventSpec]) -> None:
        self.busy: dict[str, list[tuple[float, float]]] = {}
        for e in events:
            if e.kind == "compromise":
                self.add(e.target, e.start_s, e.start_s + e.duration_s)

    def add(self, vm: str, start: float, end: float) -> None:
        self.busy.setdefault(vm, []).append((start, end))

    def free(self, vm: str, start: float, end: float, gap: float) -> bool:
        return all(end + gap <= s or start >= e + gap for s, e in self.busy.get(vm, []))


def generate_episodes(blocks: list[EpisodeBlock], cloud: Cloud, written: list[EventSpec],
                      duration_s: float) -> list[EventSpec]:  # fmt: skip
    """The events every block draws, avoiding VMs busy with a written or earlier drawn compromise."""
    calendar = _Calendar(written)
    out: list[EventSpec] = []
    candidates = [n for n, r in zip(cloud.name, cloud.role, strict=True) if r not in _NO_CLIENT_ROLES]
    for k, block in enumerate(blocks):
        rng = np.random.default_rng([block.seed, k])
        end = min(block.end_s, duration_s)
        for typ, count in sorted(block.compromise.items()):
            if typ not in COMPROMISE_DRAWS:
                raise ConfigError(f"episodes[{k}].compromise: unknown type {typ!r}; known: "
                                  f"{', '.join(sorted(COMPROMISE_DRAWS))}")  # fmt: skip
            draw, (dlo, dhi) = COMPROMISE_DRAWS[typ]
            eligible = candidates
            if typ == "lateral_movement":  # it needs other VMs in the VPC to knock on
                eligible = [n for n in candidates if len(cloud.same_vpc(cloud.index(n)))]
            for _ in range(count):
                out.append(_place(rng, calendar, eligible, typ, draw(rng), (dlo, dhi), block.start_s, end, k))
        for typ, count in sorted(block.faults.items()):
            if typ not in FAULT_DRAWS:
                known = ", ".join(sorted(FAULT_DRAWS))
                raise ConfigError(f"episodes[{k}].faults: unknown type {typ!r}; known: {known}")
            draw, (dlo, dhi) = FAULT_DRAWS[typ]
            own = np.random.default_rng([block.seed, k, zlib.crc32(typ.encode())])
            r = rng if typ in SHARED_STREAM else own
            for _ in range(count):
                d = float(r.uniform(dlo, dhi))
                start = float(r.uniform(block.start_s, max(block.start_s, end - d)))
                target = _fault_target(r, cloud, typ) or _choice(r, candidates)
                params = draw(r)
                if typ == "silent_server" and r.random() < 0.5:
                    peers = [n for n in candidates if n != target]
                    params["server"] = _choice(r, peers)
                out.append(EventSpec(kind="fault", type=typ, target=target, start_s=round(start, 1),
                                     duration_s=round(d, 1), params=params))  # fmt: skip
    return out


def _place(rng: np.random.Generator, calendar: _Calendar, candidates: list[str], typ: str, params: dict[str, Any],
           durations: tuple[float, float], lo: float, hi: float, block: int) -> EventSpec:  # fmt: skip
    """A drawn compromise on a VM free for its whole span (and 20 s either side: no label touches another)."""
    for _ in range(200):
        d = float(rng.uniform(*durations))
        d = min(d, max(1.0, hi - lo))
        start = float(rng.uniform(lo, max(lo, hi - d)))
        vm = _choice(rng, candidates)
        if calendar.free(vm, start, start + d, gap=20.0):
            calendar.add(vm, start, start + d)
            return EventSpec(kind="compromise", type=typ, target=vm, start_s=round(start, 1), duration_s=round(d, 1),
                             params=params)  # fmt: skip
    raise ConfigError(f"episodes[{block}]: no VM is free for a {typ} episode between {lo} and {hi} s; "
                      "lengthen the block or draw fewer episodes")  # fmt: skip
