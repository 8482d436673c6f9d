"""``netsentry lab``: build the scenario's cloud in network namespaces, run real servers, clients, attack tools and
kernel faults on its timeline, capture with tcpdump, and write the same outputs as ``simulate``:
``<point>.pcap``, ``tenants.yaml``, ``labels.csv`` (times measured when the lab acted) and ``_manifest.json``.
Everything it makes is torn down on exit, on Ctrl-C and on SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import yaml

from netsentry.pipeline.core.errors import LabError
from netsentry.pipeline.core.io import atomic_dir
from netsentry.pipeline.lab import actions, agents
from netsentry.pipeline.lab.scenario import LabScenario, LabVM, router_ip
from netsentry.pipeline.lab.shell import BASE_TOOLS, require_root, require_tools, spawn, stop_process, tool_versions
from netsentry.pipeline.lab.topology import (
    Lab,
    LabLock,
    build,
    check_kernel,
    clean_leftovers,
    existing_namespaces,
    ip_int,
    teardown,
)
from netsentry.pipeline.simulate.cloud import port_mac_text
from netsentry.pipeline.simulate.events import Label, write_labels

FILES = {"small.bin": 1_000, "page.bin": 20_000, "bulk.bin": 2_000_000}
"""What every lab web server serves (random bytes)."""
SERVER_WARMUP_S = 1.0
CAPTURE_READY_S = 5.0
TIMER_S = 10.0
"""Every VM's fixed-period connectivity check."""
IDLE_KEEPALIVE_S = 15
"""The keep-alive period of every VM's idle SSH session."""
HEALTH_CHECK_S = 5.0
"""How often a load balancer's prober checks every VM's web server (a cloud load balancer's default)."""
PRIVATE_ZONE, PUBLIC_ZONE = "internal", "lab.example"
"""DNS zones the gateway's resolver answers: ``<vm>.<tenant>.internal`` and ``www<i>.lab.example``."""

Progress = Callable[[float, str], None]


@dataclass
class LabResult:
    """What a lab run wrote: where, its labels as measured, each capture file's size, how long it took."""

    out_dir: Path
    labels: list[Label]
    capture_bytes: dict[str, int] = field(default_factory=dict)  # capture file → bytes written
    seconds: float = 0.0
    cleaned: list[str] = field(default_factory=list)  # an earlier run's leftovers removed first


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_lab(sc: LabScenario, out_dir: str | Path, progress: Progress | None = None) -> LabResult:
    """Run ``sc`` and write its captures and labels into ``out_dir`` (replaced only when the run completes)."""
    require_root()
    require_tools([*BASE_TOOLS, *sc.tools()])
    started = time.perf_counter()
    lock = LabLock()
    namespaces: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="nsl-work-"))
    www = work / "www"
    www.mkdir()
    try:
        with _sigterm_as_interrupt():
            cleaned = clean_leftovers()
            with atomic_dir(out_dir) as tmp:
                lab = build(sc, lock.run_id, Lab(sc, lock.run_id, namespaces, work_dir=str(work)))
                check_kernel(lab)
                for name, size in FILES.items():
                    (www / name).write_bytes(os.urandom(size))
                labels = _run_timeline(lab, tmp, www, progress)
                _write_outputs(lab, tmp, labels)
            files = {p.name: p.stat().st_size for p in Path(out_dir).glob("*.pcap")}
            return LabResult(Path(out_dir), labels, files, time.perf_counter() - started, cleaned)
    finally:
        teardown(namespaces or existing_namespaces(lock.run_id))
        shutil.rmtree(work, ignore_errors=True)
        lock.release()


def _capture_points(lab: Lab) -> list[tuple[str, str, str]]:
    """(file stem, namespace, interface) per capture point."""
    sc, out = lab.scenario, []
    for c in sc.capture:
        if c == "gateway":
            out += _gateway_points(lab)
        elif c == "internet":
            out.append(("internet", lab.gateway_ns, lab.inet_link))
        elif c == "underlay":  # every tunnel endpoint's encapsulated traffic, at the fabric's bridge
            out.append(("underlay", lab.underlay_ns, "br0"))
        else:
            vm = sc.vm(c[3:])
            out.append((f"vm-{vm.name}", lab.host_ns[vm.host], lab.vm_taps[vm.name]))
    return out


def _gateway_points(lab: Lab) -> list[tuple[str, str, str]]:
    """One capture per gateway bridge: per subnet, or with VXLAN per VPC (its subnets share the bridge)."""
    sc = lab.scenario
    if not sc.vxlan:
        return [(f"gateway-{s}", lab.gateway_ns, br) for s, br in lab.gateway_bridges.items()]
    bridges = {br: next(v.vpc for v in sc.vms if v.subnet == s) for s, br in lab.gateway_bridges.items()}
    return [(f"gateway-{vpc}", lab.gateway_ns, br) for br, vpc in bridges.items()]


def _start_captures(lab: Lab, tmp: Path, logs: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    points = _capture_points(lab)
    for stem, ns, iface in points:
        cmd = ["tcpdump", "-i", iface, "-n", "-U", "-Z", "root", "-s", str(lab.scenario.snaplen or 262144),
               "-w", str(tmp / f"{stem}.pcap")]  # fmt: skip
        procs.append(spawn(cmd, ns, str(logs / f"tcpdump-{stem}.log")))
    deadline = time.monotonic() + CAPTURE_READY_S
    for (stem, _, _), p in zip(points, procs, strict=True):
        log = logs / f"tcpdump-{stem}.log"
        while "listening on" not in (log.read_text(errors="replace") if log.exists() else ""):
            if p.poll() is not None or time.monotonic() > deadline:
                why = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
                raise LabError(f"tcpdump on {stem} did not start: {why[-1] if why else 'no output'}")
            time.sleep(0.05)
    return procs


def vm_name(vm: LabVM) -> str:
    """A VM's name in the lab's DNS (its tenant's private zone)."""
    return f"{vm.name}.{vm.tenant}.{PRIVATE_ZONE}"


def internet_name(i: int) -> str:
    return f"www{i}.{PUBLIC_ZONE}"


def _resolver(lab: Lab, logs: Path) -> subprocess.Popen[bytes]:
    """dnsmasq on the gateway, answering on every subnet's gateway address: the VMs' names, the internet hosts'
    names, NXDOMAIN for the rest of both zones, and a DNS tunnel's domain forwarded to its server."""
    sc = lab.scenario
    cmd = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
           "--pid-file", "--user=root", "--bind-interfaces", "--log-facility=-",
           f"--local=/{PRIVATE_ZONE}/", f"--local=/{PUBLIC_ZONE}/"]  # fmt: skip
    cmd += [f"--listen-address={router_ip(c)}" for c in sc.subnets.values()]
    cmd += [f"--host-record={vm_name(v)},{v.ip}" for v in sc.vms]
    cmd += [f"--host-record={internet_name(i)},{a}" for i, a in enumerate(sc.internet_hosts)]
    cmd += [f"--server=/{actions.tunnel_domain(e)}/{actions.tunnel_server(sc, e)}" for e in sc.events
            if e.type == "dns_tunnel"]  # fmt: skip
    return spawn(cmd, lab.gateway_ns, str(logs / "dnsmasq.log"))


def _start_benign(lab: Lab, www: Path, logs: Path) -> list[subprocess.Popen[bytes]]:
    sc = lab.scenario
    work = Path(lab.work_dir)
    web = [*actions.AGENTS, "web", str(www)]
    procs = [spawn(web, ns, str(logs / "web.log")) for ns in [*lab.vm_ns.values(), *lab.ext_ns.values()]]
    procs.append(_resolver(lab, logs))
    config, key = _sshd_config(work)
    procs += [spawn([shutil.which("sshd") or "sshd", "-D", "-e", "-f", str(config)], lab.vm_ns[vm.name],
                    str(logs / f"sshd-{vm.name}.log")) for vm in sc.vms]  # fmt: skip
    if any(actions.guessed_service(e) == "ftp" for e in sc.events):
        ftp = _vsftpd_config(work)
        procs += [spawn(["vsftpd", str(ftp)], lab.vm_ns[vm.name], str(logs / f"vsftpd-{vm.name}.log")) for vm in sc.vms]
    time.sleep(SERVER_WARMUP_S)
    c2 = {actions.c2_address(sc, e) for e in sc.events if e.type == "c2_beacon"}
    c2 |= {actions.tunnel_server(sc, e) for e in sc.events if e.type == "dns_tunnel"}
    everyday = [internet_name(i) for i, h in enumerate(sc.internet_hosts) if h not in c2]
    everyday = everyday or [internet_name(i) for i in range(len(sc.internet_hosts))]  # a C2 server is the implant's
    sources = {actions.internet_source(sc, e) for e in sc.events}
    probers = [h for h in sc.internet_hosts if h not in c2 and h not in sources]
    if probers:  # a load balancer's prober, on an internet host that no event uses
        check = [*actions.AGENTS, "checker", f"{HEALTH_CHECK_S:g}", ",".join(vm.ip for vm in sc.vms)]
        procs.append(spawn(check, lab.ext_ns[probers[0]], str(logs / "checker.log")))
    for i, vm in enumerate(sc.vms):
        peers = [v for v in sc.vms if v.tenant == vm.tenant and v.name != vm.name]
        resolver = router_ip(vm.cidr)
        cmd = [*actions.AGENTS, "client", str(i), f"{sc.client_period_s:g}", f"{TIMER_S:g}",
               ",".join(vm_name(v) for v in peers), ",".join(everyday), resolver, str(key)]  # fmt: skip
        procs.append(spawn(cmd, lab.vm_ns[vm.name], str(logs / f"client-{vm.name}.log")))
        if peers:  # an operator's session left open on a peer: idle but for SSH's keep-alives
            idle = ["ssh", *agents.SSH_OPTIONS, "-i", str(key), "-N", "-o", f"ServerAliveInterval={IDLE_KEEPALIVE_S}",
                    "-o", "ServerAliveCountMax=1000", f"root@{peers[0].ip}"]  # fmt: skip
            procs.append(spawn(idle, lab.vm_ns[vm.name], str(logs / f"ssh-idle-{vm.name}.log")))
    return procs


SSHD_CONFIG = """Port 22
ListenAddress 0.0.0.0
HostKey {host_key}
PidFile none
UsePAM no
StrictModes no
PubkeyAuthentication yes
AuthorizedKeysFile {authorized}
PermitRootLogin prohibit-password
PasswordAuthentication yes
KbdInteractiveAuthentication no
AllowUsers root nsl-nobody
MaxStartups 100:30:200
"""
"""Every VM's sshd: real key exchanges and password prompts. The lab's own key logs in as root but may run only
one harmless command (``restrict,command=``); no password opens anything (root takes keys only, and the other user
allowed does not exist, so every guess fails as a wrong password does)."""

LOGIN_COMMAND = "cat /proc/loadavg"
"""The one command the lab's key may run (a monitoring check)."""


def _sshd_config(work: Path) -> tuple[Path, Path]:
    """An sshd config, its host key and the lab's client key (authorised for :data:`LOGIN_COMMAND` only) under
    ``work``, and sshd's privilege-separation directory as its package's boot script makes it. Returns (config,
    client key)."""
    ssh = work / "ssh"
    ssh.mkdir(exist_ok=True)
    host_key, key = ssh / "host_ed25519", ssh / "client_ed25519"
    for k in (host_key, key):
        if not k.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)], check=True,
                           capture_output=True)  # fmt: skip
    authorized = ssh / "authorized_keys"
    authorized.write_text(f'restrict,command="{LOGIN_COMMAND}" {Path(f"{key}.pub").read_text().strip()}\n')
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    config = ssh / "sshd_config"
    config.write_text(SSHD_CONFIG.format(host_key=host_key, authorized=authorized))
    return config, key


VSFTPD_CONFIG = """listen=YES
listen_ipv6=NO
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=NO
pam_service_name=vsftpd
secure_chroot_dir={empty}
seccomp_sandbox=NO
xferlog_enable=NO
max_clients=0
max_per_ip=0
"""
"""The VMs' FTP server when a scenario guesses at FTP: local logins only, through PAM (the guessed user does not
exist, so every guess fails after PAM's delay)."""


def _vsftpd_config(work: Path) -> Path:
    empty = work / "ftp-empty"
    empty.mkdir(mode=0o755, exist_ok=True)
    config = work / "vsftpd.conf"
    config.write_text(VSFTPD_CONFIG.format(empty=empty))
    return config


def _run_timeline(lab: Lab, tmp: Path, www: Path, progress: Progress | None) -> list[Label]:
    sc = lab.scenario
    logs = tmp / "logs"
    logs.mkdir()
    captures = _start_captures(lab, tmp, logs)
    benign = _start_benign(lab, www, logs)
    pending = sorted(sc.events, key=lambda e: e.start_s)
    running: list[actions.Running] = []
    labels: list[Label] = []
    t0 = time.monotonic()
    try:
        while True:
            now = time.monotonic() - t0
            while pending and pending[0].start_s <= now:
                e = pending.pop(0)
                running.append(actions.start(lab, e, str(logs)))
                if progress:
                    progress(now, f"{e.kind} {e.type} on {e.target}")
            for r in list(running):
                if r.proc is not None and not r.finished_ns and r.proc.poll() is not None:
                    r.finished_ns = time.time_ns()
                if now >= r.event.start_s + r.event.duration_s:
                    labels.append(actions.stop(r))
                    running.remove(r)
            if now >= sc.duration_s and not running:
                break
            if progress:
                progress(min(now, sc.duration_s), "")
            time.sleep(0.05)
    finally:
        for r in running:
            labels.append(actions.stop(r))
        for p in benign:
            stop_process(p, grace_s=1.0)
        for p in captures:
            stop_process(p)
    return labels


def _tenants_yaml(lab: Lab) -> dict[str, object]:
    sc = lab.scenario
    vpcs = []
    for vpc_id, (tenant, cidr) in sc.vpcs.items():
        subnets = []
        for name, scidr in sc.subnets.items():
            ports = [{"ip": v.ip, "vm": v.name, "mac": port_mac_text(sc.vni(v), ip_int(v.ip)), "host": v.host}
                     for v in sc.vms if v.subnet == name and v.vpc == vpc_id]  # fmt: skip
            if ports:
                subnets.append({"name": name, "cidr": scidr, "ports": ports})
        vpc: dict[str, object] = {"id": vpc_id, "tenant": tenant, "cidr": cidr}
        if vpc_id in sc.vnis:
            vpc["vni"] = sc.vnis[vpc_id]
        vpcs.append({**vpc, "subnets": subnets})
    return {"gateway": "gateway", "vpcs": vpcs}


def _write_outputs(lab: Lab, tmp: Path, labels: list[Label]) -> None:
    sc = lab.scenario
    text = "# the lab's cloud, in the format `netsentry capture --tenants` reads\n"
    (tmp / "tenants.yaml").write_text(text + yaml.safe_dump(_tenants_yaml(lab), sort_keys=False))
    write_labels(tmp / "labels.csv", labels)
    manifest = {
        "source": "netsentry lab",
        "scenario": sc.name,
        "duration_s": sc.duration_s,
        "snaplen": sc.snaplen,
        "capture_points": [stem for stem, _, _ in _capture_points(lab)],
        "vxlan": {"underlay": sc.underlay_cidr, "vnis": sc.vnis} if sc.vxlan else None,
        "tools": tool_versions([*BASE_TOOLS, *sc.tools()]),
        "events": len(labels),
    }
    (tmp / "_manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
