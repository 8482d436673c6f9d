"""The simulated cloud: VMs with addresses, roles and hosts; hosts' underlay; the gateway; the
internet peers. Built deterministically from a scenario and a seed."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import numpy as np

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.simulate.scenario import Scenario

UNDERLAY = int(ipaddress.IPv4Address("172.31.0.0"))
"""Host uplinks are 172.31.0.1…; the gateway is 172.31.255.254."""
GATEWAY_IP = int(ipaddress.IPv4Address("172.31.255.254"))
GATEWAY_NAME = "gateway"
"""Host name of the gateway in the tenant map (fault targets and labels use the same name)."""
_PRIVATE = [ipaddress.ip_network(n) for n in ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8",
                                               "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16")]  # fmt: skip


def mac_tag(vni: np.ndarray | int) -> np.ndarray:
    """Second octet of a VM port's MAC (``02:TT:`` + its IPv4 address): 0 without overlay, else 1–255 from the VPC's
    VNI, so that VMs of tenants reusing one CIDR have distinct MACs, as every cloud gives each port its own."""
    v = np.asarray(vni, dtype=np.int64)
    return np.where(v == 0, 0, v % 255 + 1).astype(np.int64)


def port_mac_text(vni: int, ip: int) -> str:
    """A VM port's MAC as text (see :func:`mac_tag`)."""
    octets = [0x02, int(mac_tag(vni)), *int(ip).to_bytes(4, "big")]
    return ":".join(f"{o:02x}" for o in octets)


@dataclass
class Cloud:
    """Columnar VM inventory plus the fixed parts of the network."""

    name: list[str]
    tenant: list[str]
    vpc: list[str]
    role: np.ndarray  # object array of role names
    ip: np.ndarray  # uint32
    vni: np.ndarray  # uint32, 0 without overlay
    host: np.ndarray  # int32 host index
    subnet: list[str]
    n_hosts: int
    external: np.ndarray  # uint32 internet peers
    overlay: bool
    vpc_specs: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.name)

    def index(self, vm: str) -> int:
        """Index of the VM called ``vm`` (ConfigError naming it when absent)."""
        try:
            return self.name.index(vm)
        except ValueError:
            raise ConfigError(f"no VM named {vm!r} in the scenario's cloud") from None

    def with_role(self, role: str) -> np.ndarray:
        return np.flatnonzero(self.role == role)

    def same_vpc(self, i: int) -> np.ndarray:
        """Indices of the other VMs in VM ``i``'s VPC."""
        return np.array([j for j in range(len(self)) if self.vpc[j] == self.vpc[i] and j != i], dtype=np.int64)

    def subnet_net(self, i: int) -> ipaddress.IPv4Network:
        """The CIDR of VM ``i``'s subnet."""
        for v in self.vpc_specs:
            if v["id"] == self.vpc[i]:
                for s in v["subnets"]:
                    if s["name"] == self.subnet[i]:
                        return ipaddress.IPv4Network(s["cidr"])
        raise ConfigError(f"VM {self.name[i]}: subnet {self.subnet[i]!r} is not in VPC {self.vpc[i]}")

    def subnet_members(self, i: int) -> np.ndarray:
        """Indices of the VMs in VM ``i``'s subnet (``i`` included)."""
        key = (self.vpc[i], self.subnet[i])
        return np.array([j for j in range(len(self)) if (self.vpc[j], self.subnet[j]) == key], dtype=np.int64)

    def router_ips(self) -> np.ndarray:
        """Per VM, the first address of its subnet: its router (the gateway's port on that subnet)."""
        return np.array([int(self.subnet_net(j).network_address) + 1 for j in range(len(self))], dtype=np.uint32)

    @staticmethod
    def host_name(h: int) -> str:
        """Hosts are named ``host0`` … ``host{n-1}`` (fault targets use these names)."""
        return f"host{h}"

    def host_ip(self, h: int | np.ndarray) -> np.ndarray:
        return (np.int64(UNDERLAY + 1) + np.asarray(h, dtype=np.int64)).astype(np.uint32)

    def tenants_yaml(self) -> dict[str, Any]:
        """The cloud in the tenant-map format ``netsentry capture --tenants`` reads, with each port's
        ``mac`` and ``host`` and the ``gateway`` host name."""
        host_of = {n: self.host_name(int(h)) for n, h in zip(self.name, self.host, strict=True)}
        vpcs = [
            {
                **v,
                "subnets": [
                    {
                        **s,
                        "ports": [
                            {
                                **p,
                                "mac": port_mac_text(v.get("vni", 0), int(ipaddress.IPv4Address(p["ip"]))),
                                "host": host_of[p["vm"]],
                            }
                            for p in s["ports"]
                        ],
                    }
                    for s in v["subnets"]
                ],
            }
            for v in self.vpc_specs
        ]
        return {"gateway": GATEWAY_NAME, "vpcs": vpcs}


def _public_addresses(rng: np.random.Generator, n: int) -> np.ndarray:
    out: list[int] = []
    seen: set[int] = set()
    while len(out) < n:
        cand = rng.integers(int(ipaddress.IPv4Address("23.0.0.0")), int(ipaddress.IPv4Address("223.255.255.0")),
                            size=2 * n, dtype=np.int64)  # fmt: skip
        for c in cand.tolist():
            a = ipaddress.IPv4Address(c)
            if c in seen or c & 0xFF in (0, 255) or any(a in net for net in _PRIVATE):
                continue
            seen.add(c)
            out.append(c)
            if len(out) == n:
                break
    return np.array(out, dtype=np.uint32)


def build_cloud(sc: Scenario, rng: np.random.Generator) -> Cloud:
    """Lay out VMs (addresses from .10 up in each subnet), place them on hosts, pick internet peers."""
    names, tenants, vpcs, roles, ips, vnis, subnets = [], [], [], [], [], [], []
    counts: dict[str, int] = {}
    vpc_specs: list[dict[str, Any]] = []
    nets: list[tuple[str, ipaddress.IPv4Network]] = []
    next_vni = 1000
    for t in sc.cloud.tenants:
        for v in t.vpcs:
            net = ipaddress.ip_network(v.cidr)
            for other, onet in nets:
                if sc.overlay == "none" and net.overlaps(onet):
                    raise ConfigError(
                        f"VPC {v.id} ({net}) overlaps {other} ({onet}); reusing a CIDR needs overlay: vxlan"
                    )
            nets.append((v.id, net))
            vni = 0
            if sc.overlay == "vxlan":
                vni = v.vni if v.vni is not None else next_vni
                next_vni = max(next_vni, vni) + 1
            spec: dict[str, Any] = {"id": v.id, "tenant": t.name, "cidr": str(net), "subnets": []}
            if vni:
                spec["vni"] = vni
            for s in v.subnets:
                snet = ipaddress.ip_network(s.cidr)
                if not snet.subnet_of(net):
                    raise ConfigError(f"subnet {s.name} ({snet}) is not inside VPC {v.id} ({net})")
                ports = []
                k = 10
                for g in s.vms:
                    for _ in range(g.count):
                        addr = snet.network_address + k
                        if addr not in snet or addr == snet.broadcast_address:
                            raise ConfigError(f"subnet {s.name} ({snet}) is too small for its VMs")
                        base = g.prefix or f"{t.name}-{g.role}"
                        counts[base] = counts.get(base, 0) + 1
                        name = f"{base}-{counts[base]}"
                        names.append(name)
                        tenants.append(t.name)
                        vpcs.append(v.id)
                        roles.append(g.role)
                        ips.append(int(addr))
                        vnis.append(vni)
                        subnets.append(s.name)
                        ports.append({"ip": str(addr), "vm": name})
                        k += 1
                spec["subnets"].append({"name": s.name, "cidr": str(snet), "ports": ports})
            vpc_specs.append(spec)
    if not names:
        raise ConfigError("the scenario's cloud has no VMs")
    if len(set(names)) != len(names):
        raise ConfigError("two VM groups produce the same VM names; give them distinct prefixes")
    host = rng.permutation(len(names)) % sc.cloud.hosts
    return Cloud(
        name=names,
        tenant=tenants,
        vpc=vpcs,
        role=np.array(roles, dtype=object),
        ip=np.array(ips, dtype=np.uint32),
        vni=np.array(vnis, dtype=np.uint32),
        host=host.astype(np.int32),
        subnet=subnets,
        n_hosts=sc.cloud.hosts,
        external=_public_addresses(rng, sc.cloud.external_hosts),
        overlay=sc.overlay == "vxlan",
        vpc_specs=vpc_specs,
    )
