"""What the lab does at an event's start and end: attack tools started in a VM's namespace, kernel faults set and
cleared. Each action reports the moments it acted, which become the label's start and end."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netsentry.pipeline.lab.scenario import LabEvent, LabScenario
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
    undo: list[list[str]] | None = None
    undo_ns: str = ""
    finished_ns: int = 0  # when its tool was seen to have exited by itself


def _now() -> int:
    return time.time_ns()


def _vm_label(lab: Lab, e: LabEvent, start_ns: int, detail: str) -> Label:
    vm = lab.scenario.vm(e.target)
    return Label(kind=e.kind, scenario=e.type, scope_type="vm", scope=vm.ip, start_ns=start_ns, end_ns=start_ns,
                 tenant=vm.tenant, vm=vm.name, vni=0, detail=detail)  # fmt: skip


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
            source = sc.internet_hosts[int(_param(e, "source", 0)) % len(sc.internet_hosts)]
            interval = max(1, int(1e6 / float(_param(e, "rate_pps", 500))))
            t0 = _now()
            proc = spawn(["hping3", "-q", "-S", "-p", str(_param(e, "port", 80)), "-i", f"u{interval}", vm.ip],
                         lab.ext_ns[source], log, cwd=lab.work_dir)  # fmt: skip
            return Running(e, _vm_label(lab, e, t0, f"role=victim tool=hping3-syn source={source}"), proc)
        elif e.type == "ssh_bruteforce":
            return _ssh_guessing(lab, e, log)
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


def _ssh_guessing(lab: Lab, e: LabEvent, log: str) -> Running:
    """hydra against sshd: ``role`` victim (default; an internet host guesses at the target VM) or attacker (the
    target VM guesses at ``victim``, another VM)."""
    sc = lab.scenario
    words = Path(lab.work_dir) / "words.txt"
    words.write_text("\n".join(WORDS * 50) + "\n")
    tasks = str(_param(e, "tasks", 4))
    if str(_param(e, "role", "victim")) == "attacker":
        ns, victim, role = lab.vm_ns[e.target], _victim(lab, e), "attacker"
        peer = victim
    else:
        peer = sc.internet_hosts[int(_param(e, "source", 0)) % len(sc.internet_hosts)]
        ns, victim, role = lab.ext_ns[peer], sc.vm(e.target).ip, "victim"
    cmd = ["hydra", "-I", "-l", str(_param(e, "user", "admin")), "-P", str(words), "-t", tasks, "-w", "5",
           f"ssh://{victim}"]  # fmt: skip
    t0 = _now()
    detail = f"service=ssh port=22 role={role} peer={peer} tool=hydra"
    return Running(e, _vm_label(lab, e, t0, detail), spawn(cmd, ns, log, cwd=lab.work_dir))


def _config_change(lab: Lab, e: LabEvent) -> Running:
    """A subnet cut off at the gateway, as ``simulate``'s ``config_change``. ``route_withdrawn``: the route into it
    (silent), or with ``answer: icmp`` its way out (an ``unreachable`` policy rule: its packets are answered "net
    unreachable"); ``filter_pushed``: a filter dropping both ways, or with ``icmp`` rejecting its packets with
    admin-prohibited."""
    subnet = e.target
    cidr = lab.scenario.subnets[subnet]
    br = lab.gateway_bridges[subnet]
    gw_ip = str(ipaddress.IPv4Network(cidr).network_address + 1)
    action = str(_param(e, "action", "route_withdrawn"))
    answer = str(_param(e, "answer", "silent"))
    if action == "filter_pushed":
        table = ["inet", "nsl_change"]
        outbound = ["reject", "with", "icmp", "type", "admin-prohibited"] if answer == "icmp" else ["drop"]
        rules = [["nft", "add", "table", *table],
                 ["nft", "add", "chain", *table, "drops", "{ type filter hook forward priority 0; policy accept; }"],
                 ["nft", "add", "rule", *table, "drops", "ip", "daddr", cidr, "drop"],
                 ["nft", "add", "rule", *table, "drops", "ip", "saddr", cidr, *outbound]]  # fmt: skip
        undo = [["nft", "delete", "table", *table]]
    elif answer == "icmp":  # the subnet's way out withdrawn: the gateway answers its packets "net unreachable"
        rules = [["ip", "rule", "add", "from", cidr, "iif", br, "unreachable"]]
        undo = [["ip", "rule", "del", "from", cidr, "iif", br, "unreachable"]]
    else:  # the way in withdrawn: answers to the subnet vanish (their senders get the ICMP, on the internet side)
        rules = [["ip", "route", "del", cidr, "dev", br]]
        undo = [["ip", "route", "add", cidr, "dev", br, "proto", "kernel", "scope", "link", "src", gw_ip]]
    for r in rules:
        run(r, netns=lab.gateway_ns)
    t0 = _now()
    tenant = next((v.tenant for v in lab.scenario.vms if v.subnet == subnet), "")
    detail = f"host=gateway; subnet={cidr}; action={action}; answer={answer}"
    label = Label(kind="fault", scenario="config_change", scope_type="link", scope="gateway", start_ns=t0,
                  end_ns=t0, tenant=tenant, detail=detail)  # fmt: skip
    return Running(e, label, undo=undo, undo_ns=lab.gateway_ns)


def _start_fault(lab: Lab, e: LabEvent) -> Running:
    if e.type == "config_change":
        return _config_change(lab, e)
    host, ns = e.target, lab.host_ns[e.target]
    if e.type == "loss_burst":
        p = float(_param(e, "loss_p", 0.1))
        n = str(max(1, round(p * 1000)))
        run(["nft", "add", "table", "bridge", "nsl_loss"], netns=ns)
        run(["nft", "add", "chain", "bridge", "nsl_loss", "drops",
             "{ type filter hook forward priority 0; policy accept; }"], netns=ns)  # fmt: skip
        for side in ("iifname", "oifname"):
            run(["nft", "add", "rule", "bridge", "nsl_loss", "drops", side, "up*", "numgen", "random", "mod", "1000",
                 "<", n, "drop"], netns=ns)  # fmt: skip
        undo, detail = [["nft", "delete", "table", "bridge", "nsl_loss"]], f"loss_p={p:g}; tool=nft-numgen"
    elif e.type == "latency_spike":
        rate, latency = str(_param(e, "rate", "200kbit")), str(_param(e, "latency", "400ms"))
        undo = []
        for up in lab.uplinks[host]:
            run(["tc", "qdisc", "add", "dev", up, "root", "tbf", "rate", rate, "burst", "4kb", "latency", latency],
                netns=ns)  # fmt: skip
            undo.append(["tc", "qdisc", "del", "dev", up, "root"])
        detail = f"tool=tbf; rate={rate}; latency={latency}"
    else:  # blackhole
        undo = []
        for up in lab.uplinks[host]:
            run(["ip", "link", "set", up, "down"], netns=ns)
            undo.append(["ip", "link", "set", up, "up"])
        detail = "tool=link-down"
    t0 = _now()
    label = Label(kind="fault", scenario=e.type, scope_type="host", scope=host, start_ns=t0, end_ns=t0, detail=detail)
    return Running(e, label, undo=undo, undo_ns=ns)


def stop(r: Running) -> Label:
    """End an event: stop its tool (or note that it had finished) or clear its fault; the label ends then."""
    end = _now()
    if r.proc is not None:
        if r.proc.poll() is None:
            stop_process(r.proc)
            end = _now()
        else:
            end = r.finished_ns or end
    for cmd in r.undo or []:
        run(cmd, netns=r.undo_ns, check=False)
    if r.undo:
        end = _now()
    r.label.end_ns = max(end, r.label.start_ns + 1)
    return r.label
