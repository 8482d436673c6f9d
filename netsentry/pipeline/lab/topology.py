"""The lab's cloud in network namespaces, and its hygiene: per-run names, a lock, teardown, leftovers.

Layout (``nsl-<run>-`` prefixes every namespace): a gateway namespace routes between one bridge per tenant subnet
and an ``inet`` namespace, where each internet host is a namespace of its own; each host is a namespace with one
bridge per subnet it has VMs in, trunked to the gateway's bridge of that subnet by a veth (the host's uplink for
that subnet); a VM is a namespace whose ``eth0`` (MAC ``02:00:`` + its address, as ``simulate`` names ports) hangs
on its host's bridge. Nothing connects to the root namespace: no traffic leaves the lab.

With ``vxlan: true`` the hosts and the gateway are tunnel endpoints instead: each has one link into an ``ul``
namespace (the underlay fabric, a bridge), and per VPC a real kernel VXLAN device (its VNI, UDP 4789) on a bridge of
that VPC, flooding to the other endpoints of the VPC (head-end replication) and learning the rest; VMs hang on their
host's VPC bridge with an MTU of 1450 (the 50 bytes of encapsulation), and a VPC's subnets share its segment.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from netsentry.pipeline.core.errors import LabError, LockHeldError
from netsentry.pipeline.lab.scenario import LabScenario, LabVM, router_ip
from netsentry.pipeline.lab.shell import run
from netsentry.pipeline.simulate.cloud import port_mac_text

STATE_DIR = Path(os.environ.get("NETSENTRY_LAB_STATE", "/run/netsentry-lab"))
"""Where a running lab records its namespaces and pid, and holds its lock."""
PREFIX = "nsl-"


def ip_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


@dataclass
class Lab:
    """A built lab: its run id, namespaces (in creation order) and the names of the interfaces that matter."""

    scenario: LabScenario
    run_id: str
    namespaces: list[str] = field(default_factory=list)
    vm_ns: dict[str, str] = field(default_factory=dict)  # VM name → namespace
    host_ns: dict[str, str] = field(default_factory=dict)
    ext_ns: dict[str, str] = field(default_factory=dict)  # internet address → namespace
    gateway_ns: str = ""
    inet_ns: str = ""
    gateway_bridges: dict[str, str] = field(default_factory=dict)  # subnet → bridge in the gateway namespace
    uplinks: dict[str, list[str]] = field(default_factory=dict)  # host → its uplink interfaces (host namespace)
    vm_taps: dict[str, str] = field(default_factory=dict)  # VM → its port's interface in its host's namespace
    inet_link: str = "inet0"  # the gateway's interface to the internet
    underlay_ns: str = ""  # the VXLAN fabric (vxlan only)
    loss_links: dict[str, tuple[str, str]] = field(default_factory=dict)  # host → (namespace, bridge-port pattern)
    work_dir: str = ""  # the run's scratch files (served pages, sshd's key and config, word lists)

    def ns(self, name: str) -> str:
        full = f"{PREFIX}{self.run_id}-{name}"
        run(["ip", "netns", "add", full])
        self.namespaces.append(full)
        run(["ip", "link", "set", "lo", "up"], netns=full)
        return full


def wire_sized(ns: str, dev: str) -> None:
    """No segmentation or receive offloads on ``dev``: the stacks send, and captures see, frames of at most the MTU,
    as a wire carries them (with offloads a veth hands tcpdump 64 kB TCP super-frames, and a drop takes a whole
    one)."""
    run(["ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off"], netns=ns)


def _veth(a_ns: str, a: str, b_ns: str, b: str) -> None:
    run(["ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns])
    for ns, dev in ((a_ns, a), (b_ns, b)):
        wire_sized(ns, dev)
        run(["ip", "link", "set", dev, "up"], netns=ns)


def _bridge(ns: str, name: str) -> None:
    run(["ip", "link", "add", name, "type", "bridge", "stp_state", "0", "forward_delay", "0"], netns=ns)
    run(["ip", "link", "set", name, "up"], netns=ns)


def build(sc: LabScenario, run_id: str, lab: Lab | None = None) -> Lab:
    """Create every namespace, bridge, link, address and route of ``sc`` (into ``lab`` when given: its namespace list
    fills as they are made, so the caller can tear down after a failure half-way)."""
    lab = lab if lab is not None else Lab(sc, run_id)
    lab.gateway_ns = gw = lab.ns("gw")
    run(["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"], netns=gw)
    subnet_index = {name: i for i, name in enumerate(sc.subnets)}
    inet_net = ipaddress.IPv4Network(sc.internet_cidr)
    lab.inet_ns = inet = lab.ns("inet")
    _bridge(inet, "br0")
    _veth(gw, lab.inet_link, inet, "gw0")
    run(["ip", "link", "set", "gw0", "master", "br0"], netns=inet)
    run(["ip", "addr", "add", f"{router_ip(sc.internet_cidr)}/{inet_net.prefixlen}", "dev", lab.inet_link], netns=gw)
    for i, addr in enumerate(sc.internet_hosts):
        x = lab.ns(f"x{i}")
        _veth(inet, f"x{i}", x, "eth0")
        run(["ip", "link", "set", f"x{i}", "master", "br0"], netns=inet)
        run(["ip", "addr", "add", f"{addr}/{inet_net.prefixlen}", "dev", "eth0"], netns=x)
        run(["ip", "route", "add", "default", "via", router_ip(sc.internet_cidr)], netns=x)
        lab.ext_ns[addr] = x
    for host in sc.hosts:
        lab.host_ns[host] = lab.ns(host)
    port_bridge = _vxlan_segments(lab) if sc.vxlan else _host_uplinks(lab, subnet_index)
    for i, vm in enumerate(sc.vms):
        vn = lab.ns(f"vm{i}")
        lab.vm_ns[vm.name] = vn
        hn = lab.host_ns[vm.host]
        _veth(hn, f"v{i}", vn, "eth0")
        run(["ip", "link", "set", f"v{i}", "master", port_bridge(vm)], netns=hn)
        net = ipaddress.IPv4Network(vm.cidr)
        run(["ip", "link", "set", "eth0", "address", port_mac_text(sc.vni(vm), ip_int(vm.ip))], netns=vn)
        if sc.vxlan:
            for dev, ns in (("eth0", vn), (f"v{i}", hn)):
                run(["ip", "link", "set", dev, "mtu", str(VXLAN_MTU)], netns=ns)
        run(["ip", "addr", "add", f"{vm.ip}/{net.prefixlen}", "dev", "eth0"], netns=vn)
        run(["ip", "route", "add", "default", "via", router_ip(vm.cidr)], netns=vn)
        lab.vm_taps[vm.name] = f"v{i}"
    return lab


VXLAN_MTU = 1450
"""The VMs' MTU over VXLAN: 1500 less the 50 bytes of outer Ethernet, IPv4, UDP and VXLAN headers."""
VXLAN_PORT = 4789


def _router_address(gw: str, cidr: str, bridge: str) -> None:
    run(["ip", "addr", "add", f"{router_ip(cidr)}/{ipaddress.IPv4Network(cidr).prefixlen}", "dev", bridge], netns=gw)


def _host_uplinks(lab: Lab, subnet_index: dict[str, int]) -> Callable[[LabVM], str]:
    """Without VXLAN: per subnet a bridge in the gateway with its router address; per host a bridge per subnet it has
    VMs in, trunked to the gateway's bridge of that subnet. Returns the host bridge a VM's port joins."""
    sc, gw = lab.scenario, lab.gateway_ns
    for name, cidr in sc.subnets.items():
        lab.gateway_bridges[name] = br = f"br{subnet_index[name]}"
        _bridge(gw, br)
        _router_address(gw, cidr, br)
    for h, host in enumerate(sc.hosts):
        hn = lab.host_ns[host]
        lab.uplinks[host] = []
        lab.loss_links[host] = (hn, "up*")
        for name in sorted({v.subnet for v in sc.vms if v.host == host}, key=subnet_index.get):
            s = subnet_index[name]
            _bridge(hn, f"br{s}")
            _veth(hn, f"up{s}", gw, f"h{h}s{s}")
            run(["ip", "link", "set", f"up{s}", "master", f"br{s}"], netns=hn)
            run(["ip", "link", "set", f"h{h}s{s}", "master", lab.gateway_bridges[name]], netns=gw)
            lab.uplinks[host].append(f"up{s}")
    return lambda vm: f"br{subnet_index[vm.subnet]}"


def underlay_ip(sc: LabScenario, host: str | None) -> str:
    """A tunnel endpoint's underlay address: the gateway's is the underlay's router address, host ``hostN``'s .10+N."""
    if host is None:
        return router_ip(sc.underlay_cidr)
    return str(ipaddress.IPv4Network(sc.underlay_cidr).network_address + 10 + sc.hosts.index(host))


def _vxlan_segments(lab: Lab) -> Callable[[LabVM], str]:
    """With VXLAN: the underlay fabric, and per VPC a VXLAN device on a bridge in the gateway and in each host with
    VMs of it; the gateway's VPC bridge holds the router addresses of the VPC's subnets.
    Returns the host bridge a VM's port joins."""
    sc, gw = lab.scenario, lab.gateway_ns
    lab.underlay_ns = fabric = lab.ns("ul")
    _bridge(fabric, "br0")
    prefix = ipaddress.IPv4Network(sc.underlay_cidr).prefixlen
    ends = {None: gw, **{h: lab.host_ns[h] for h in sc.hosts}}
    for h, ns in ends.items():
        port = "gw" if h is None else f"h{sc.hosts.index(h)}"
        _veth(ns, "ul0", fabric, port)
        run(["ip", "link", "set", port, "master", "br0"], netns=fabric)
        run(["ip", "addr", "add", f"{underlay_ip(sc, h)}/{prefix}", "dev", "ul0"], netns=ns)
        if h is not None:
            lab.uplinks[h], lab.loss_links[h] = ["ul0"], (fabric, port)
    run(["sh", "-c", "for f in /proc/sys/net/ipv4/conf/*/send_redirects; do echo 0 > $f; done"], netns=gw)
    for k, (vpc, vni) in enumerate(sc.vnis.items()):
        members = [None, *sorted({v.host for v in sc.vms if v.vpc == vpc}, key=sc.hosts.index)]
        for h in members:
            ns = ends[h]
            _bridge(ns, f"bv{k}")
            try:
                run(["ip", "link", "add", f"vx{k}", "type", "vxlan", "id", str(vni), "local", underlay_ip(sc, h),
                     "dstport", str(VXLAN_PORT), "dev", "ul0"], netns=ns)  # fmt: skip
            except LabError as e:
                raise LabError(f"the kernel lacks VXLAN (needed for vxlan: true): {e}") from None
            wire_sized(ns, f"vx{k}")
            run(["ip", "link", "set", f"vx{k}", "master", f"bv{k}"], netns=ns)
            run(["ip", "link", "set", f"vx{k}", "up"], netns=ns)
            for peer in members:
                if peer != h:
                    run(["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", f"vx{k}", "dst",
                         underlay_ip(sc, peer)], netns=ns)  # fmt: skip
        for name in sorted({v.subnet for v in sc.vms if v.vpc == vpc}, key=list(sc.subnets).index):
            _router_address(gw, sc.subnets[name], f"bv{k}")
            lab.gateway_bridges[name] = f"bv{k}"
    return lambda vm: f"bv{list(sc.vnis).index(vm.vpc)}"


def _pids(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def kill_namespace_processes(namespaces: list[str], grace_s: float = 2.0) -> None:
    """SIGTERM every process in the namespaces, then SIGKILL what is left after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [p for ns in namespaces for p in _pids(ns)]
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)
        deadline = time.monotonic() + grace_s
        while pids and time.monotonic() < deadline and any(_pids(ns) for ns in namespaces):
            time.sleep(0.05)


def existing_namespaces(run_id: str | None = None) -> list[str]:
    """The lab namespaces that exist now (of one run, or of every run)."""
    out = run(["ip", "netns", "list"], check=False)
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    head = f"{PREFIX}{run_id}-" if run_id else PREFIX
    return [n for n in names if n.startswith(head)]


def teardown(namespaces: list[str]) -> None:
    """Stop every process in the namespaces and delete them (links and qdiscs go with them)."""
    kill_namespace_processes(namespaces)
    for ns in reversed(namespaces):
        run(["ip", "netns", "del", ns], check=False)


class LabLock:
    """One lab at a time: an exclusive lock under :data:`STATE_DIR`, plus a state file naming this run's pid, so
    that a later run can prove which leftovers are whose."""

    def __init__(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        self.run_id = secrets.token_hex(2)
        self._fh = open(STATE_DIR / "lock", "a+")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise LockHeldError(f"another netsentry lab is running (lock {STATE_DIR / 'lock'})") from None
        self.state = STATE_DIR / f"{self.run_id}.json"
        self.state.write_text(json.dumps({"pid": os.getpid(), "run_id": self.run_id}))

    def release(self) -> None:
        self.state.unlink(missing_ok=True)
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()


def clean_leftovers() -> list[str]:
    """Delete the namespaces of earlier runs whose process is gone (their state file says which run they were);
    call with the lock held. Returns the namespaces removed."""
    removed: list[str] = []
    for f in sorted(STATE_DIR.glob("*.json")):
        try:
            st = json.loads(f.read_text())
            pid, rid = int(st["pid"]), str(st["run_id"])
        except (ValueError, KeyError, OSError):
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        left = existing_namespaces(rid)
        teardown(left)
        removed += left
        f.unlink(missing_ok=True)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_kernel(lab: Lab) -> None:
    """LabError when the kernel lacks what faults need (nftables bridge filtering, the tbf qdisc)."""
    ns = lab.gateway_ns
    try:
        run(["nft", "add", "table", "bridge", "probe"], netns=ns)
        run(["nft", "add", "chain", "bridge", "probe", "drops", "{ type filter hook forward priority 0; }"], netns=ns)
        run(["nft", "delete", "table", "bridge", "probe"], netns=ns)
        run(["tc", "qdisc", "add", "dev", lab.inet_link, "root", "tbf", "rate", "1mbit", "burst", "4kb", "latency",
             "100ms"], netns=ns)  # fmt: skip
        run(["tc", "qdisc", "del", "dev", lab.inet_link, "root"], netns=ns)
    except LabError as e:
        raise LabError(f"the kernel lacks nftables bridge filtering or tbf (needed for faults): {e}") from None
