"""Lab scenarios (``configs/lab/*.yaml``): the cloud to build in network namespaces, where to capture, and the
timeline of benign traffic, compromises by real tools and faults by the kernel."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from netsentry.pipeline.core.errors import ConfigError, InputNotFoundError
from netsentry.pipeline.simulate.faults import CONFIG_ACTIONS, CONFIG_ANSWERS

COMPROMISE_TYPES = ("port_scan_vertical", "ping_sweep", "udp_sweep", "ddos_syn", "c2_beacon", "ssh_bruteforce",
                    "bruteforce", "dns_tunnel", "arp_spoofing")  # fmt: skip
FAULT_TYPES = ("loss_burst", "latency_spike", "blackhole", "config_change")
TOOLS_BY_TYPE = {"port_scan_vertical": ("nmap",), "ping_sweep": ("nmap",), "udp_sweep": ("nmap",),
                 "ddos_syn": ("hping3",), "ssh_bruteforce": ("hydra",), "bruteforce": ("hydra",),
                 "dns_tunnel": ("iodine", "iodined", "ifconfig"), "arp_spoofing": ("arpspoof",)}  # fmt: skip
"""Attack tools an event type runs (checked before anything is built; iodine configures its interface with
ifconfig)."""
GUESSED_SERVICES = ("ssh", "ftp", "http-auth")
"""What a lab ``bruteforce`` may guess at (the servers its VMs run)."""
FIRST_VNI = 1000
"""A VPC's VNI when ``vxlan: true`` and it declares none: the next free from here, in file order (as ``simulate``)."""
MAX_VNI = (1 << 24) - 1


def router_ip(cidr: str) -> str:
    """A network's router address in the lab: its first host address (the gateway's on a subnet, where the VMs'
    default route and resolver answer; the tenant map's default ``gateway_ip`` too)."""
    return str(ipaddress.IPv4Network(cidr).network_address + 1)


@dataclass(frozen=True)
class LabVM:
    name: str
    tenant: str
    vpc: str
    subnet: str
    cidr: str  # the subnet's
    ip: str
    host: str


@dataclass(frozen=True)
class LabEvent:
    kind: str  # compromise | fault
    type: str
    target: str  # a VM (compromises, silent VM faults), a host (host faults) or a subnet (config_change)
    start_s: float
    duration_s: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LabScenario:
    name: str
    duration_s: float
    snaplen: int
    hosts: tuple[str, ...]
    vms: tuple[LabVM, ...]
    subnets: dict[str, str]  # subnet name → cidr
    vpcs: dict[str, tuple[str, str]]  # vpc id → (tenant, cidr)
    internet_cidr: str
    internet_hosts: tuple[str, ...]  # addresses
    capture: tuple[str, ...]  # gateway, internet, underlay (vxlan), vm:<name>
    client_period_s: float
    events: tuple[LabEvent, ...]
    vxlan: bool = False  # VMs' traffic between hosts and the gateway in real kernel VXLAN, one VNI per VPC
    underlay_cidr: str = "100.64.0.0/24"  # the hosts' and the gateway's tunnel endpoints (vxlan only)
    vnis: dict[str, int] = field(default_factory=dict)  # vpc id → VNI (vxlan only)

    def vm(self, name: str) -> LabVM:
        for v in self.vms:
            if v.name == name:
                return v
        raise ConfigError(f"unknown VM {name!r}; the scenario's VMs are {', '.join(v.name for v in self.vms)}")

    def vni(self, vm: LabVM) -> int:
        """The VNI a VM's frames carry between hosts (0 without VXLAN)."""
        return self.vnis.get(vm.vpc, 0)

    def scaled(self, factor: float) -> LabScenario:
        """The same timeline stretched by ``factor`` (durations and start times)."""
        if factor <= 0:
            raise ConfigError(f"--scale must be > 0, got {factor:g}")
        events = tuple(LabEvent(e.kind, e.type, e.target, e.start_s * factor, e.duration_s * factor, e.params)
                       for e in self.events)  # fmt: skip
        return LabScenario(**{**self.__dict__, "duration_s": self.duration_s * factor, "events": events})

    def tools(self) -> tuple[str, ...]:
        tools = {t for e in self.events for t in TOOLS_BY_TYPE.get(e.type, ())}
        if any(e.type == "bruteforce" and e.params.get("service") == "ftp" for e in self.events):
            tools.add("vsftpd")
        if self.vxlan:
            tools.add("bridge")  # the VXLAN devices' flood entries
        return tuple(sorted(tools))


def _check_config_change(params: dict[str, Any], where: str) -> None:
    """``action`` and ``answer`` among simulate's (a ConfigError naming the field otherwise)."""
    for key, allowed in (("action", CONFIG_ACTIONS), ("answer", CONFIG_ANSWERS)):
        if key in params and params[key] not in allowed:
            raise ConfigError(f"{where}.params.{key}: one of {', '.join(allowed)}, got {params[key]!r}")


def _need(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise ConfigError(f"{where}: missing field {key!r}")
    return d[key]


def _network(text: Any, where: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(str(text))
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not an IPv4 network (e.g. 10.10.1.0/24)") from None


def load_lab_scenario(path: str | Path) -> LabScenario:
    """Read and check a lab scenario; ConfigError names the file and the field."""
    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError("lab scenario not found", path=str(p))
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping with name, duration_s, hosts, tenants, events")
    try:
        return _parse(raw)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


def _parse(raw: dict[str, Any]) -> LabScenario:
    hosts = tuple(f"host{i}" for i in range(int(raw.get("hosts", 2))))
    if not 1 <= len(hosts) <= 8:
        raise ConfigError("hosts: between 1 and 8")
    vms: list[LabVM] = []
    subnets: dict[str, str] = {}
    vpcs: dict[str, tuple[str, str]] = {}
    vxlan = raw.get("vxlan", False)
    if not isinstance(vxlan, bool):
        raise ConfigError(f"vxlan: true or false, got {vxlan!r}")
    declared: dict[str, int] = {}
    for ti, t in enumerate(_need(raw, "tenants", "scenario")):
        tenant = str(_need(t, "name", f"tenants[{ti}]"))
        vpc_id = str(t.get("vpc", f"{tenant}-vpc"))
        vpc_net = _network(_need(t, "cidr", f"tenants[{ti}]"), f"tenants[{ti}].cidr")
        vpcs[vpc_id] = (tenant, str(vpc_net))
        if "vni" in t:
            vni = t["vni"]
            if not vxlan or not isinstance(vni, int) or not 1 <= vni <= MAX_VNI or vni in declared.values():
                raise ConfigError(f"tenants[{ti}].vni: a unique integer 1..{MAX_VNI}, with vxlan: true; got {vni!r}")
            declared[vpc_id] = vni
        for si, s in enumerate(_need(t, "subnets", f"tenants[{ti}]")):
            where = f"tenants[{ti}].subnets[{si}]"
            name = str(_need(s, "name", where))
            net = _network(_need(s, "cidr", where), f"{where}.cidr")
            if not net.subnet_of(vpc_net) or net.prefixlen > 28:
                raise ConfigError(f"{where}.cidr: {net} must lie in the VPC's {vpc_net} and hold VMs (/28 or larger)")
            if name in subnets or any(net.overlaps(_network(c, "")) for c in subnets.values()):
                raise ConfigError(f"{where}: subnet names and CIDRs must be unique across tenants (a lab has one "
                                  "routing table)")  # fmt: skip
            subnets[name] = str(net)
            for vi, v in enumerate(_need(s, "vms", where)):
                host = str(v.get("host", hosts[len(vms) % len(hosts)]))
                if host not in hosts:
                    raise ConfigError(f"{where}.vms[{vi}].host: {host!r} is not one of {', '.join(hosts)}")
                ip = str(net.network_address + 10 + sum(1 for x in vms if x.subnet == name))
                vms.append(LabVM(str(_need(v, "name", f"{where}.vms[{vi}]")), tenant, vpc_id, name, str(net), ip, host))
    if len({v.name for v in vms}) != len(vms):
        raise ConfigError("tenants: VM names must be unique")
    inet = raw.get("internet", {}) or {}
    inet_net = _network(inet.get("cidr", "198.18.0.0/24"), "internet.cidr")
    n_ext = int(inet.get("hosts", 2))
    ext = tuple(str(inet_net.network_address + 11 + i) for i in range(n_ext))
    events = []
    for i, e in enumerate(raw.get("events", []) or []):
        where = f"events[{i}]"
        kind, typ = str(_need(e, "kind", where)), str(_need(e, "type", where))
        known = COMPROMISE_TYPES if kind == "compromise" else FAULT_TYPES if kind == "fault" else ()
        if typ not in known:
            raise ConfigError(f"{where}.type: {typ!r} is not a lab {kind or 'event'} type; known: {', '.join(known)}"
                              if known else f"{where}.kind: 'compromise' or 'fault', got {kind!r}")  # fmt: skip
        ev = LabEvent(kind, typ, str(_need(e, "target", where)), float(_need(e, "start_s", where)),
                      float(_need(e, "duration_s", where)), dict(e.get("params", {}) or {}))  # fmt: skip
        if ev.start_s < 0 or ev.duration_s <= 0:
            raise ConfigError(f"{where}: start_s >= 0 and duration_s > 0")
        what, names = (("a subnet", set(subnets)) if typ == "config_change" else ("a host", set(hosts))
                       if kind == "fault" else ("a VM", {v.name for v in vms}))  # fmt: skip
        if ev.target not in names:
            raise ConfigError(f"{where}.target: a {typ} acts on {what} ({', '.join(sorted(names))}), "
                              f"not {ev.target!r}")  # fmt: skip
        if typ == "config_change":
            _check_config_change(ev.params, where)
        if typ == "bruteforce" and ev.params.get("service", "ssh") not in GUESSED_SERVICES:
            raise ConfigError(f"{where}.params.service: one of {', '.join(GUESSED_SERVICES)} (the servers a lab VM "
                              f"runs), got {ev.params['service']!r}")  # fmt: skip
        events.append(ev)
    capture = tuple(str(c) for c in raw.get("capture", ["gateway", "internet"]))
    names = {v.name for v in vms}
    for c in capture:
        if c == "underlay" and not vxlan:
            raise ConfigError("capture: 'underlay' is the VXLAN underlay; it needs vxlan: true")
        if c not in ("gateway", "internet", "underlay") and not (c.startswith("vm:") and c[3:] in names):
            raise ConfigError(f"capture: {c!r}; expected gateway, internet, underlay or vm:<VM name>")
    underlay = _network((raw.get("underlay", {}) or {}).get("cidr", "100.64.0.0/24"), "underlay.cidr")
    if vxlan and (underlay.num_addresses < 16 + len(hosts) or underlay.overlaps(inet_net)
                  or any(underlay.overlaps(_network(c, "")) for c in subnets.values())):  # fmt: skip
        raise ConfigError(f"underlay.cidr: {underlay} must hold the gateway and every host's tunnel endpoint (from "
                          ".10) and overlap no subnet nor the internet")  # fmt: skip
    duration = float(_need(raw, "duration_s", "scenario"))
    if duration <= 0 or any(e.start_s + e.duration_s > duration for e in events):
        raise ConfigError("duration_s must be > 0 and hold every event (start_s + duration_s)")
    return LabScenario(
        name=str(raw.get("name", "lab")), duration_s=duration, snaplen=int(raw.get("snaplen", 256)), hosts=hosts,
        vms=tuple(vms), subnets=subnets, vpcs=vpcs, internet_cidr=str(inet_net), internet_hosts=ext,
        capture=capture, client_period_s=float(raw.get("client_period_s", 2.0)), events=tuple(events),
        vxlan=vxlan, underlay_cidr=str(underlay), vnis=_vnis(vpcs, declared) if vxlan else {},
    )  # fmt: skip


def _vnis(vpcs: dict[str, tuple[str, str]], declared: dict[str, int]) -> dict[str, int]:
    """Every VPC's VNI: its own when declared, else the next unused from :data:`FIRST_VNI`."""
    out, used, nxt = {}, set(declared.values()), FIRST_VNI
    for vpc in vpcs:
        if vpc in declared:
            out[vpc] = declared[vpc]
            continue
        while nxt in used:
            nxt += 1
        out[vpc] = nxt
        used.add(nxt)
    return out
