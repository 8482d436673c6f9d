"""The lab's cloud in network namespaces, and its hygiene: per-run names, a lock, teardown, leftovers.

Layout (``nsl-<run>-`` prefixes every namespace): a gateway namespace routes between one bridge per tenant subnet
and an ``inet`` namespace, where each internet host is a namespace of its own; each host is a namespace with one
bridge per subnet it has VMs in, trunked to the gateway's bridge of that subnet by a veth (the host's uplink for
that subnet); a VM is a namespace whose ``eth0`` (MAC ``02:00:`` + its address, as ``simulate`` names ports) hangs
on its host's bridge. Nothing connects to the root namespace: no traffic leaves the lab.
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
from dataclasses import dataclass, field
from pathlib import Path

from netsentry.pipeline.core.errors import LabError, LockHeldError
from netsentry.pipeline.lab.scenario import LabScenario, router_ip
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
    work_dir: str = ""  # the run's scratch files (served pages, sshd's key and config, word lists)

    def ns(self, name: str) -> str:
        full = f"{PREFIX}{self.run_id}-{name}"
        run(["ip", "netns", "add", full])
        self.namespaces.append(full)
        run(["ip", "link", "set", "lo", "up"], netns=full)
        return full


def _veth(a_ns: str, a: str, b_ns: str, b: str) -> None:
    run(["ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns])
    run(["ip", "link", "set", a, "up"], netns=a_ns)
    run(["ip", "link", "set", b, "up"], netns=b_ns)


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
    for name, cidr in sc.subnets.items():
        br = f"br{subnet_index[name]}"
        _bridge(gw, br)
        net = ipaddress.IPv4Network(cidr)
        run(["ip", "addr", "add", f"{router_ip(cidr)}/{net.prefixlen}", "dev", br], netns=gw)
        lab.gateway_bridges[name] = br
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
    for h, host in enumerate(sc.hosts):
        hn = lab.ns(host)
        lab.host_ns[host] = hn
        lab.uplinks[host] = []
        for name in sorted({v.subnet for v in sc.vms if v.host == host}, key=subnet_index.get):
            s = subnet_index[name]
            _bridge(hn, f"br{s}")
            _veth(hn, f"up{s}", gw, f"h{h}s{s}")
            run(["ip", "link", "set", f"up{s}", "master", f"br{s}"], netns=hn)
            run(["ip", "link", "set", f"h{h}s{s}", "master", lab.gateway_bridges[name]], netns=gw)
            lab.uplinks[host].append(f"up{s}")
    for i, vm in enumerate(sc.vms):
        vn = lab.ns(f"vm{i}")
        lab.vm_ns[vm.name] = vn
        hn, s = lab.host_ns[vm.host], subnet_index[vm.subnet]
        _veth(hn, f"v{i}", vn, "eth0")
        run(["ip", "link", "set", f"v{i}", "master", f"br{s}"], netns=hn)
        net = ipaddress.IPv4Network(vm.cidr)
        run(["ip", "link", "set", "eth0", "address", port_mac_text(0, ip_int(vm.ip))], netns=vn)
        run(["ip", "addr", "add", f"{vm.ip}/{net.prefixlen}", "dev", "eth0"], netns=vn)
        run(["ip", "route", "add", "default", "via", router_ip(vm.cidr)], netns=vn)
        lab.vm_taps[vm.name] = f"v{i}"
    return lab


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
