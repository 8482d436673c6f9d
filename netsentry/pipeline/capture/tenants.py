"""Tenant map: which tenant and VM an address belongs to, Alcor-style (VPC → subnets → ports).

The file (see ``configs/tenants.example.yaml``) is a top-level ``vpcs:`` list (and an optional
``gateway:`` host name). Matching rules (:meth:`TenantMap.lookup`):

* **Overlay first.** When a packet's VNI is non-zero and some VPC declares that VNI, the address is
  matched (longest prefix) only against the VPCs with that VNI, because tenants reuse private CIDRs.
  If none of them contains it, VPCs that declare *no* VNI are tried (flat/provider networks); VPCs of
  other VNIs never match.
* **Otherwise longest-prefix match** over every VPC, ignoring VNIs (VNI 0, or a VNI no VPC declares).
  When several VPCs share the longest matching prefix (e.g. two tenants both on 10.0.0.0/16 seen
  without an overlay), the **first declared** wins.
* **A port's own frames.** A packet without a VNI (a VM tap, a bridge inside the tenant network) whose innermost
  Ethernet source (else destination) is a port's declared ``mac`` *and* whose source (else destination) address is
  that port's ``ip`` takes the port's VPC VNI at capture (:meth:`TenantMap.port_vnis`): on a tap, a port's MAC
  names its network, so tenants that reuse a CIDR stay apart without an overlay header.
* **VM** by exact address among the matched VPC's ports. Inside a VPC but on no port: vm ``unknown``.
  In no VPC: tenant and vm are both ``external``.
* **Host** (:meth:`TenantMap.endpoint_hosts`, for fault windows): the port's ``host`` (hypervisor)
  when declared; an external address, or a subnet's router address (``gateway_ip``, default the subnet's first
  host address: what the VMs route through, and where a cloud's resolver and metadata answer) → the file's
  top-level ``gateway`` when declared; otherwise the address as text (a capture without a map gets one "host" per
  address).

Tenant and VM labels come back as int32 codes into fixed category tuples (``external`` is code 0 in
both; ``unknown`` is vm code 1), so every batch shares one Arrow dictionary and building the
``dictionary<int32, string>`` columns copies nothing. VM names are not qualified by tenant: identify
a VM by (tenant, vm).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from netsentry.pipeline.core.errors import ConfigError, InputNotFoundError, SchemaError
from netsentry.pipeline.core.io import atomic_write_text
from netsentry.pipeline.core.schemas import PACKETS, check_columns, ip16_numpy, ip_text

EXTERNAL = "external"
"""Tenant and vm label of an address in no VPC (code 0 in both category tuples)."""
UNKNOWN = "unknown"
"""vm label of an address inside a VPC but on none of its ports (vm code 1)."""
MAX_VNI = (1 << 24) - 1

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_U64 = (1 << 64) - 1

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# --------------------------------------------------------------------------- file models


def _network(text: str) -> Network:
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid network (address/prefix, no host bits set)") from None


def _overlapping(nets: list[Network]) -> tuple[int, int] | None:
    for i, a in enumerate(nets):
        for j in range(i):
            b = nets[j]
            if a.version == b.version and a.overlaps(b):
                return j, i
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PortSpec(_Strict):
    """One address of a VM (an Alcor port)."""

    ip: str
    mac: str | None = None
    vm: str = Field(min_length=1)
    host: str | None = Field(default=None, min_length=1)
    """The hypervisor the VM runs on (optional; names host scopes in fault windows)."""

    @field_validator("ip")
    @classmethod
    def _ip(cls, v: str) -> str:
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            raise ValueError(f"{v!r} is not a valid IP address") from None

    @field_validator("mac")
    @classmethod
    def _mac(cls, v: str | None) -> str | None:
        if v is not None and not _MAC.match(v.lower()):
            raise ValueError(f"{v!r} is not a MAC address like 02:00:0a:01:00:05")
        return None if v is None else v.lower()

    @field_validator("vm")
    @classmethod
    def _vm(cls, v: str) -> str:
        if v in (EXTERNAL, UNKNOWN):
            raise ValueError(f"{v!r} is reserved; choose another VM name")
        return v


class SubnetSpec(_Strict):
    """A subnet of a VPC; its ports must lie inside it."""

    cidr: str
    name: str | None = None
    gateway_ip: str | None = None
    """The subnet's router address (Alcor's and OpenStack's ``gateway_ip``); default the CIDR's first host address."""
    ports: list[PortSpec] = []

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        return str(_network(v))

    @property
    def router(self) -> str:
        """The router address: ``gateway_ip``, else the first host address (network address + 1)."""
        net = ipaddress.ip_network(self.cidr)
        return self.gateway_ip or str(net.network_address + 1 if net.num_addresses > 1 else net.network_address)

    @model_validator(mode="after")
    def _ports_inside(self) -> SubnetSpec:
        net = ipaddress.ip_network(self.cidr)
        if self.gateway_ip is not None:
            try:
                inside = ipaddress.ip_address(self.gateway_ip) in net
            except ValueError:
                inside = False
            if not inside:
                raise PydanticCustomError(
                    "gateway_outside",
                    "'{ip}' is not an address inside its subnet {cidr}",
                    {"ip": self.gateway_ip, "cidr": self.cidr, "subloc": ("gateway_ip",)},
                )
        for i, p in enumerate(self.ports):
            if ipaddress.ip_address(p.ip) not in net:
                raise PydanticCustomError(
                    "port_outside",
                    "'{ip}' is not inside its subnet {cidr}",
                    {"ip": p.ip, "cidr": self.cidr, "subloc": ("ports", i, "ip")},
                )
        return self


class VpcSpec(_Strict):
    """A VPC: its address space, optional overlay id, owner tenant, subnets."""

    id: str = Field(min_length=1)
    tenant: str | None = Field(default=None, min_length=1)
    cidr: str
    secondary_cidrs: list[str] = []
    vni: int | None = Field(default=None, ge=1, le=MAX_VNI)
    subnets: list[SubnetSpec] = []

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        return str(_network(v))

    @field_validator("secondary_cidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        out = []
        for i, c in enumerate(v):
            try:
                out.append(str(_network(c)))
            except ValueError as e:
                raise PydanticCustomError("bad_network", "{msg}", {"msg": str(e), "subloc": (i,)}) from None
        return out

    @model_validator(mode="after")
    def _consistent(self) -> VpcSpec:
        if self.tenant_name == EXTERNAL:
            raise PydanticCustomError(
                "reserved",
                "'external' is reserved for addresses in no VPC",
                {"subloc": ("tenant" if self.tenant else "id",)},
            )
        nets = self.networks()
        if (pair := _overlapping(nets)) is not None:
            raise PydanticCustomError(
                "overlap",
                "{b} overlaps {a} of the same VPC",
                {
                    "a": str(nets[pair[0]]),
                    "b": str(nets[pair[1]]),
                    "subloc": ("secondary_cidrs", pair[1] - 1),
                },
            )
        subnets = [ipaddress.ip_network(s.cidr) for s in self.subnets]
        for i, s in enumerate(subnets):
            if not any(s.version == n.version and s.subnet_of(n) for n in nets):
                raise PydanticCustomError(
                    "subnet_outside",
                    "{s} is not inside the VPC's cidr ({nets})",
                    {"s": str(s), "nets": ", ".join(map(str, nets)), "subloc": ("subnets", i, "cidr")},
                )
        if (pair := _overlapping(subnets)) is not None:
            raise PydanticCustomError(
                "overlap",
                "{b} overlaps subnets[{j}] ({a})",
                {
                    "a": str(subnets[pair[0]]),
                    "b": str(subnets[pair[1]]),
                    "j": pair[0],
                    "subloc": ("subnets", pair[1], "cidr"),
                },
            )
        seen: dict[str, tuple[int, int]] = {}
        for i, s in enumerate(self.subnets):
            for k, p in enumerate(s.ports):
                if p.ip in seen:
                    raise PydanticCustomError(
                        "duplicate",
                        "'{ip}' is already a port at subnets[{i}].ports[{k}]",
                        {
                            "ip": p.ip,
                            "i": seen[p.ip][0],
                            "k": seen[p.ip][1],
                            "subloc": ("subnets", i, "ports", k, "ip"),
                        },
                    )
                seen[p.ip] = (i, k)
        return self

    @property
    def tenant_name(self) -> str:
        """The owning tenant (defaults to the VPC id)."""
        return self.tenant or self.id

    def networks(self) -> list[Network]:
        """Primary then secondary CIDRs."""
        return [ipaddress.ip_network(c) for c in (self.cidr, *self.secondary_cidrs)]


class TenantFile(_Strict):
    """The whole tenants file: a list of VPCs and, optionally, the gateway's host name."""

    gateway: str | None = Field(default=None, min_length=1)
    """The host that traffic to and from external addresses passes through (e.g. ``gateway``)."""
    vpcs: list[VpcSpec] = []

    @model_validator(mode="after")
    def _unique(self) -> TenantFile:
        ids: dict[str, int] = {}
        vnis: dict[int, int] = {}
        for i, v in enumerate(self.vpcs):
            if v.id in ids:
                raise PydanticCustomError(
                    "duplicate",
                    "VPC id '{id}' is already used by vpcs[{j}]",
                    {"id": v.id, "j": ids[v.id], "subloc": ("vpcs", i, "id")},
                )
            ids[v.id] = i
            if v.vni is not None:
                if v.vni in vnis:
                    raise PydanticCustomError(
                        "duplicate",
                        "VNI {vni} is already used by vpcs[{j}]; a VNI identifies one VPC",
                        {"vni": v.vni, "j": vnis[v.vni], "subloc": ("vpcs", i, "vni")},
                    )
                vnis[v.vni] = i
        return self


def _field_path(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _one_line(e: ValidationError) -> str:
    """First validation error as ``field.path: message``, plus a count of the others."""
    errs = e.errors(include_url=False)
    err = errs[0]
    ctx = err.get("ctx") or {}
    path = _field_path(tuple(err["loc"]) + tuple(ctx.get("subloc", ())))
    kind = err["type"]
    if kind == "missing":
        msg = "required field is missing"
    elif kind == "extra_forbidden":
        msg = "unknown field"
    elif kind == "value_error":
        msg = err["msg"].removeprefix("Value error, ")
    elif "subloc" in ctx:
        msg = err["msg"]
    else:
        got = repr(err.get("input"))
        hint = "; quote the value" if kind == "string_type" and isinstance(err.get("input"), int | float) else ""
        msg = f"{err['msg']} (got {got[:60] + '…' if len(got) > 60 else got}{hint})"
    more = f" (and {len(errs) - 1} more error{'s' if len(errs) > 2 else ''})" if len(errs) > 1 else ""
    return f"{path or '<top>'}: {msg}{more}".replace("\n", " ")


# --------------------------------------------------------------------------- lookup


class Labels(NamedTuple):
    """Per-row int32 codes into the (shared, fixed) category tuples."""

    tenant: np.ndarray
    vm: np.ndarray
    tenants: tuple[str, ...]
    vms: tuple[str, ...]

    def to_arrow(self) -> tuple[pa.DictionaryArray, pa.DictionaryArray]:
        """``dictionary<int32, string>`` arrays; the codes are not copied."""
        return (
            pa.DictionaryArray.from_arrays(pa.array(self.tenant, pa.int32()), pa.array(self.tenants, pa.string())),
            pa.DictionaryArray.from_arrays(pa.array(self.vm, pa.int32()), pa.array(self.vms, pa.string())),
        )


def _ip16_one(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    return (b"\x00" * 10 + b"\xff\xff" + ip.packed) if ip.version == 4 else ip.packed


def _as_numpy(vni: Any, ip16: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(vni, pa.ChunkedArray | pa.Array):
        vni = vni.to_numpy()
    if isinstance(ip16, pa.ChunkedArray | pa.Array):
        ip16 = ip16_numpy(ip16)
    vni = np.asarray(vni, dtype=np.uint32).ravel()
    ip16 = np.ascontiguousarray(ip16, dtype=np.uint8)
    if ip16.ndim != 2 or ip16.shape[1] != 16 or len(ip16) != len(vni):
        raise SchemaError(f"tenant lookup needs vni (n,) and ip16 (n, 16); got {vni.shape} and {ip16.shape}")
    return vni, ip16


def _distinct(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a C-contiguous ``(n, w)`` uint8 array → (distinct rows, inverse index); exact, hash-based."""
    n, w = key.shape
    arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(w), n, [None, pa.py_buffer(key)])
    enc = arr.dictionary_encode()
    d = enc.dictionary
    uniq = np.frombuffer(d.buffers()[1], dtype=np.uint8, count=w * (len(d) + d.offset))
    return uniq.reshape(-1, w)[d.offset :], enc.indices.to_numpy()


def _hi_lo(ip16: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = np.ascontiguousarray(ip16).view(">u8")
    return w[:, 0].astype(np.uint64), w[:, 1].astype(np.uint64)


class TenantMap:
    """Address → (tenant, vm) for packets and flows; see the module docstring for the rules."""

    def __init__(self, config: TenantFile, source: str | None = None) -> None:
        self.config = config
        self.source = source
        vpcs = config.vpcs
        self.tenants: tuple[str, ...] = tuple(dict.fromkeys([EXTERNAL, *(v.tenant_name for v in vpcs)]))
        vm_names = [p.vm for v in vpcs for s in v.subnets for p in s.ports]
        self.vms: tuple[str, ...] = tuple(dict.fromkeys([EXTERNAL, UNKNOWN, *vm_names]))
        t_code = {t: i for i, t in enumerate(self.tenants)}
        vm_code = {m: i for i, m in enumerate(self.vms)}
        # vpc index + 1 → tenant code (row 0: no VPC → external)
        self._vpc_tenant = np.array([0, *(t_code[v.tenant_name] for v in vpcs)], dtype=np.int32)
        self._vnis = np.array(sorted(v.vni for v in vpcs if v.vni is not None), dtype=np.uint32)

        # Network entries in match priority: longest prefix first, then declaration order.
        entries = []
        for vi, v in enumerate(vpcs):
            for ni, net in enumerate(v.networks()):
                plen = net.prefixlen + (96 if net.version == 4 else 0)
                base = int.from_bytes(_ip16_one(net.network_address), "big")
                mask = (((1 << 128) - 1) << (128 - plen)) & ((1 << 128) - 1)
                entries.append((-plen, vi, ni, base, mask, v.vni or 0))
        entries.sort(key=lambda e: e[:3])
        self._entries = [
            (
                vi,
                np.uint64(base >> 64),
                np.uint64(base & _U64),
                np.uint64(mask >> 64),
                np.uint64(mask & _U64),
                vni,
            )
            for _, vi, _, base, mask, vni in entries
        ]

        # Ports: sorted 20-byte keys (big-endian vpc index, ip16) for a vectorized exact match.
        keys, codes = [], []
        for vi, v in enumerate(vpcs):
            for s in v.subnets:
                for p in s.ports:
                    keys.append(vi.to_bytes(4, "big") + _ip16_one(ipaddress.ip_address(p.ip)))
                    codes.append(vm_code[p.vm])
        port_keys = np.array(keys, dtype="S20")
        order = np.argsort(port_keys, kind="stable")
        self._port_keys = port_keys[order]
        self._port_vm = np.array(codes, dtype=np.int32)[order]

        # Port identities: ports that declare a MAC in a VPC with a VNI, sorted by MAC (a NIC with several addresses
        # is several ports with one MAC: adjacent after sorting, at most ``_ident_dups`` of them).
        ident = sorted(
            (int(port.mac.replace(":", ""), 16), _ip16_one(ipaddress.ip_address(port.ip)), v.vni)
            for v in vpcs
            if v.vni
            for sub in v.subnets
            for port in sub.ports
            if port.mac is not None
        )
        self._ident_mac = np.array([i[0] for i in ident], dtype=np.uint64)
        self._ident_ip = np.frombuffer(b"".join(i[1] for i in ident), dtype=np.uint8).reshape(len(ident), 16)
        self._ident_vni = np.array([i[2] for i in ident], dtype=np.uint32)
        _, dups = np.unique(self._ident_mac, return_counts=True)
        self._ident_dups = int(dups.max()) if len(dups) else 0

        # Hosts: declared port hosts (first-seen order), then the gateway; -1 = port without a host.
        port_hosts = [p.host for v in vpcs for s in v.subnets for p in s.ports]
        self.gateway: str | None = config.gateway
        self.hosts: tuple[str, ...] = tuple(
            dict.fromkeys([h for h in port_hosts if h is not None] + ([config.gateway] if config.gateway else []))
        )
        h_code = {h: i for i, h in enumerate(self.hosts)}
        self._port_host = np.array([h_code[h] if h is not None else -1 for h in port_hosts], dtype=np.int32)[order]
        self._gateway_code = h_code[config.gateway] if config.gateway else -1
        # Subnet routers (VPC index, address), sorted: their addresses live on the gateway.
        routers = {vi.to_bytes(4, "big") + _ip16_one(ipaddress.ip_address(s.router)) for vi, v in enumerate(vpcs)
                   for s in v.subnets}  # fmt: skip
        self._router_keys = np.sort(np.array(sorted(routers), dtype="S20"))

    @classmethod
    def empty(cls) -> TenantMap:
        """A map with no VPCs: every address is ``external``."""
        return cls(TenantFile())

    def __repr__(self) -> str:
        n_vpcs, n_tenants = len(self.config.vpcs), len(self.tenants) - 1
        return f"TenantMap({n_vpcs} VPCs, {n_tenants} tenants, source={self.source!r})"

    def _match(self, vni: np.ndarray, ip16: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Match each distinct (effective VNI, address) once.

        Returns the distinct addresses ``(m, 16)``, their VPC index (-1: none), their position in the
        sorted port table (-1: no port) and the inverse index ``(n,)`` back to the rows.
        """
        n = len(vni)
        if len(self._vnis):
            vni_eff = np.where(np.isin(vni, self._vnis), vni, np.uint32(0)).astype(np.uint32)
            key = np.empty((n, 20), dtype=np.uint8)
            key[:, :4] = vni_eff.view(np.uint8).reshape(n, 4)
            key[:, 4:] = ip16
            uniq, inverse = _distinct(key)
            u_vni = np.ascontiguousarray(uniq[:, :4]).view(np.uint32).ravel()
            u_ip = uniq[:, 4:]
        else:
            u_ip, inverse = _distinct(ip16)
            u_vni = np.zeros(len(u_ip), dtype=np.uint32)
        hi, lo = _hi_lo(u_ip)

        vpc = np.full(len(u_ip), -1, dtype=np.int32)
        # Pass 1: overlay rows against the VPCs of their own VNI.
        for vi, nh, nl, mh, ml, evni in self._entries:
            if evni:
                m = (u_vni == evni) & (vpc < 0)
                m &= ((hi & mh) == nh) & ((lo & ml) == nl)
                vpc[m] = vi
        # Pass 2: VNI-0 rows against every VPC; unmatched overlay rows against VNI-less VPCs.
        for vi, nh, nl, mh, ml, evni in self._entries:
            m = (vpc < 0) if not evni else (vpc < 0) & (u_vni == 0)
            m &= ((hi & mh) == nh) & ((lo & ml) == nl)
            vpc[m] = vi

        port = np.full(len(u_ip), -1, dtype=np.int64)
        inside = np.flatnonzero(vpc >= 0)
        if len(inside) and len(self._port_keys):
            q = np.empty((len(inside), 20), dtype=np.uint8)
            q[:, :4] = vpc[inside].astype(">u4").view(np.uint8).reshape(-1, 4)
            q[:, 4:] = u_ip[inside]
            qk = q.view("S20").ravel()
            pos = np.minimum(np.searchsorted(self._port_keys, qk), len(self._port_keys) - 1)
            hit = self._port_keys[pos] == qk
            port[inside[hit]] = pos[hit]
        return u_ip, vpc, port, inverse

    def _is_router(self, u_ip: np.ndarray, vpc: np.ndarray) -> np.ndarray:
        """Which of the matched addresses are their subnet's router address."""
        out = np.zeros(len(u_ip), dtype=bool)
        inside = np.flatnonzero(vpc >= 0)
        if len(inside) and len(self._router_keys):
            q = np.empty((len(inside), 20), dtype=np.uint8)
            q[:, :4] = vpc[inside].astype(">u4").view(np.uint8).reshape(-1, 4)
            q[:, 4:] = u_ip[inside]
            out[inside] = np.isin(q.view("S20").ravel(), self._router_keys)
        return out

    def lookup(self, vni: np.ndarray | pa.Array, ip16: np.ndarray | pa.Array) -> Labels:
        """Label ``n`` endpoints given their VNI ``(n,)`` uint32 and address ``(n, 16)`` uint8.

        Matching runs once per distinct (effective VNI, address) pair, then maps back by the inverse
        index. Returns int32 codes into :attr:`tenants` / :attr:`vms`.
        """
        vni, ip16 = _as_numpy(vni, ip16)
        n = len(vni)
        if n == 0 or not self.config.vpcs:
            zeros = np.zeros(n, dtype=np.int32)
            return Labels(zeros, zeros.copy(), self.tenants, self.vms)
        _, vpc, port, inverse = self._match(vni, ip16)
        tenant_u = self._vpc_tenant[vpc + 1]
        vm_u = np.where(vpc >= 0, np.int32(1), np.int32(0)).astype(np.int32)
        hit = port >= 0
        vm_u[hit] = self._port_vm[port[hit]]
        return Labels(tenant_u[inverse], vm_u[inverse], self.tenants, self.vms)

    @property
    def has_port_identities(self) -> bool:
        """True when some port of a VPC with a VNI declares its MAC (:meth:`port_vnis` can name a network)."""
        return len(self._ident_mac) > 0

    def port_vnis(self, vni: np.ndarray, src_mac: np.ndarray, src_ip16: np.ndarray, dst_mac: np.ndarray,
                  dst_ip16: np.ndarray) -> np.ndarray:  # fmt: skip
        """``vni`` with each 0 replaced by the VPC VNI of the port that sent the frame (its MAC and address are
        the source's), else of the port it was sent to (the destination's); other rows unchanged."""
        out = np.array(vni, dtype=np.uint32, copy=True)
        todo = np.flatnonzero(out == 0)
        last = len(self._ident_mac) - 1
        port_ip = self._ident_ip.view(np.uint64)  # (ports, 2): an address compares as two words
        for mac, ip16 in ((src_mac, src_ip16), (dst_mac, dst_ip16)):
            if not len(todo) or last < 0:
                break
            m = np.asarray(mac, np.uint64)[todo]
            first = np.searchsorted(self._ident_mac, m)
            hit = np.zeros(len(todo), dtype=bool)
            for d in range(self._ident_dups):
                pos = np.minimum(first + d, last)
                cand = np.flatnonzero(~hit & (self._ident_mac[pos] == m))
                if not len(cand):
                    break
                ip = np.ascontiguousarray(np.asarray(ip16, np.uint8)[todo[cand]]).view(np.uint64)
                want = port_ip[pos[cand]]
                found = cand[(ip[:, 0] == want[:, 0]) & (ip[:, 1] == want[:, 1])]
                out[todo[found]] = self._ident_vni[pos[found]]
                hit[found] = True
            todo = todo[~hit]
        return out

    def endpoint_hosts(self, vni: np.ndarray | pa.Array, ip16: np.ndarray | pa.Array) -> pa.DictionaryArray:
        """Host name of ``n`` endpoints (VNI ``(n,)``, address ``(n, 16)``) as ``dictionary<int32, string>``.

        A port's declared ``host``; an external address (in no VPC) or a subnet's router address → :attr:`gateway`
        when the file declares one; otherwise the address as text. The dictionary starts with :attr:`hosts` (fixed
        codes) followed by the address texts of this call.
        """
        vni, ip16 = _as_numpy(vni, ip16)
        if len(vni) == 0:
            return pa.DictionaryArray.from_arrays(pa.array([], pa.int32()), pa.array(self.hosts, pa.string()))
        if self.config.vpcs:
            u_ip, vpc, port, inverse = self._match(vni, ip16)
        else:
            u_ip, inverse = _distinct(ip16)
            vpc = np.full(len(u_ip), -1, dtype=np.int32)
            port = np.full(len(u_ip), -1, dtype=np.int64)
        code = np.full(len(u_ip), -1, dtype=np.int32)
        hit = port >= 0
        code[hit] = self._port_host[port[hit]]
        if self._gateway_code >= 0:
            code[(vpc < 0) & (code < 0)] = self._gateway_code
            code[(code < 0) & self._is_router(u_ip, vpc)] = self._gateway_code
        names: tuple[str, ...] = self.hosts
        rest = np.flatnonzero(code < 0)
        if len(rest):
            texts, pos = np.unique(ip_text(u_ip[rest]).astype(str), return_inverse=True)
            code[rest] = len(self.hosts) + pos.astype(np.int32)
            names = (*self.hosts, *texts.tolist())
        return pa.DictionaryArray.from_arrays(pa.array(code[inverse], pa.int32()), pa.array(names, pa.string()))

    def lookup_text(self, ip: str, vni: int = 0) -> tuple[str, str]:
        """(tenant, vm) of one textual address; for people and tests."""
        raw = np.frombuffer(_ip16_one(ipaddress.ip_address(ip)), dtype=np.uint8).reshape(1, 16)
        lab = self.lookup(np.array([vni], dtype=np.uint32), raw)
        return self.tenants[lab.tenant[0]], self.vms[lab.vm[0]]

    def ports_by_mac(self) -> dict[int, tuple[tuple[str, ...], str, str]]:
        """Each declared port MAC (as an integer) → (its addresses, tenant, VM): a NIC with several addresses is
        several ports with one MAC."""
        out: dict[int, tuple[tuple[str, ...], str, str]] = {}
        for v in self.config.vpcs:
            for sub in v.subnets:
                for port in sub.ports:
                    if port.mac is not None:
                        key = int(port.mac.replace(":", ""), 16)
                        ips, tenant, vm = out.get(key, ((), v.tenant or v.id, port.vm))
                        out[key] = ((*ips, port.ip), tenant, vm)
        return out

    def to_yaml_dict(self) -> dict[str, Any]:
        """The map in the file format (defaults omitted); :func:`load_tenant_map` reads it back."""
        out: dict[str, Any] = {}
        if self.config.gateway is not None:
            out["gateway"] = self.config.gateway
        out["vpcs"] = [v.model_dump(mode="json", exclude_defaults=True) for v in self.config.vpcs]
        return out


# --------------------------------------------------------------------------- files


def tenant_map_from_dict(data: Mapping[str, Any] | None, source: str = "<tenants>") -> TenantMap:
    """Validate a parsed tenants document; errors are one line naming ``source`` and the field."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping with a top-level 'vpcs:' list, got {type(data).__name__}", path=source)
    try:
        cfg = TenantFile.model_validate(dict(data))
    except ValidationError as e:
        raise ConfigError(_one_line(e), path=source) from None
    return TenantMap(cfg, source=source)


def load_tenant_map(path: str | Path) -> TenantMap:
    """Read and validate a tenants YAML file (an empty file is an empty map)."""
    p = Path(path)
    if not p.is_file():
        if p.exists():
            raise ConfigError("is not a regular file", path=str(path))
        raise InputNotFoundError("tenant map not found", path=str(path))
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read: {e}".replace("\n", " "), path=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}YAML syntax error: {problem}".replace("\n", " "), path=str(path)) from None
    return tenant_map_from_dict(data, source=str(path))


def dump_tenant_map(tmap: TenantMap, path: str | Path) -> None:
    """Write ``tmap`` as a tenants YAML file (atomically)."""
    body = yaml.safe_dump(tmap.to_yaml_dict(), sort_keys=False, default_flow_style=False, allow_unicode=True)
    atomic_write_text(path, "# netsentry tenant map (format: configs/tenants.example.yaml)\n" + body)


def vm_hosts(tmap: TenantMap) -> dict[str, str]:
    """``tenant/vm`` → the host its ports declare; a VM whose ports name several hosts gets its first port's."""
    out: dict[str, str] = {}
    for vpc in tmap.config.vpcs:
        for subnet in vpc.subnets:
            for port in subnet.ports:
                if port.host is not None:
                    out.setdefault(f"{vpc.tenant_name}/{port.vm}", port.host)
    return out


def router_hosts(tmap: TenantMap) -> dict[str, str]:
    """Each subnet's router address (text) → the map's gateway host, where it lives; empty without a ``gateway``. A
    router address is on no port, so per-VM tables name it by its address."""
    if not tmap.gateway:
        return {}
    return {str(ipaddress.ip_address(s.router)): tmap.gateway for v in tmap.config.vpcs for s in v.subnets}


def vm_addresses(tmap: TenantMap) -> dict[str, list[str]]:
    """``tenant/vm`` → the addresses of its ports."""
    out: dict[str, list[str]] = {}
    for vpc in tmap.config.vpcs:
        for subnet in vpc.subnets:
            for port in subnet.ports:
                out.setdefault(f"{vpc.tenant_name}/{port.vm}", []).append(str(port.ip))
    return out


# --------------------------------------------------------------------------- tables


def endpoint_labels(
    vni: np.ndarray | pa.Array | pa.ChunkedArray,
    ip16: np.ndarray | pa.Array | pa.ChunkedArray,
    tmap: TenantMap,
) -> tuple[pa.DictionaryArray, pa.DictionaryArray]:
    """(tenant, vm) ``dictionary<int32, string>`` arrays for one endpoint column (e.g. flows' src or dst)."""
    return tmap.lookup(vni, ip16).to_arrow()


def assign_packets(table: pa.Table, tmap: TenantMap) -> pa.Table:
    """Fill a packets table's ``tenant``/``vm``: the source's if it is in a VPC, else the destination's.

    A packet between two external addresses is ``external``/``external``. Column types stay as in
    :data:`netsentry.pipeline.core.schemas.PACKETS`.
    """
    check_columns(table, PACKETS, "packets")
    n = table.num_rows
    vni = np.asarray(table.column("vni").to_numpy(), dtype=np.uint32)
    src = ip16_numpy(table.column("src_ip"))
    dst = ip16_numpy(table.column("dst_ip"))
    lab = tmap.lookup(np.concatenate([vni, vni]), np.concatenate([src, dst]))
    src_in = lab.tenant[:n] != 0
    tenant = np.where(src_in, lab.tenant[:n], lab.tenant[n:]).astype(np.int32)
    vm = np.where(src_in, lab.vm[:n], lab.vm[n:]).astype(np.int32)
    t_arr, vm_arr = Labels(tenant, vm, lab.tenants, lab.vms).to_arrow()
    for name, arr in (("tenant", t_arr), ("vm", vm_arr)):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, PACKETS.field(name), arr)
    return table
