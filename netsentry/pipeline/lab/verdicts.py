"""What was found against what was done: each label of a lab (or simulated) run matched with the findings of
``netsentry run``/``inspect`` on its captures, and the benign VMs that were flagged anyway.

A compromise label is found by a medium or high compromise finding (any type: scans, ARP, DNS) about its VM's
address; a fault label by a medium or high fault finding whose scope names its host (the host, a pair or path with
it, or a VM on it; for a gateway change, the gateway or a VM of the changed subnet). Either must overlap the labelled
span widened by one window of its kind on each side (:data:`SLACK_S`). A fault whose kernel counters (in its label:
``dropped=``, ``delayed=``) are all zero touched no packet: it is reported as not exercised, not as missed.

``python -m netsentry.pipeline.lab.verdicts RUN_DIR WORKSPACE`` prints the table (``make lab`` does).
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from netsentry.pipeline.core.errors import InputNotFoundError
from netsentry.pipeline.features.labels import read_labels

ALARMS = ("medium", "high")
SLACK_S = {"compromise": 60.0, "fault": 1.0}
"""One window of each kind (tenant windows 60 s, fault windows 1 s): how far a finding may lie outside a label."""


@dataclass(frozen=True)
class Verdict:
    event: str  # kind/scenario, or "benign VM"
    scope: str
    start_ns: int
    end_ns: int
    found: str  # "severity kind scope", or "" when missed (for a benign VM: the false alarm)
    exercised: bool = True  # False: the kernel counted no packet the fault touched


def _ports(tenants: dict[str, Any]) -> list[dict[str, Any]]:
    """Every port of a tenant map, with its VPC's tenant."""
    return [{**p, "tenant": v.get("tenant", "")} for v in tenants.get("vpcs", []) for s in v.get("subnets", [])
            for p in s.get("ports", [])]  # fmt: skip


def _fault_places(lab: Any, ports: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """(hosts, VM scopes ``tenant/vm``) a fault finding may name to be about this label."""
    hosts = {str(lab.scope)}
    vms = {f"{p['tenant']}/{p['vm']}" for p in ports if p.get("host") == str(lab.scope)}
    detail = str(lab.detail)
    if "subnet=" in detail:
        net = ipaddress.IPv4Network(detail.split("subnet=")[1].split(";")[0].strip())
        tenant = str(getattr(lab, "tenant", "") or "")  # CIDRs may repeat across tenants
        vms |= {f"{p['tenant']}/{p['vm']}" for p in ports
                if ipaddress.IPv4Address(p["ip"]) in net and tenant in ("", p["tenant"])}  # fmt: skip
    return hosts, vms


def exercised(detail: str) -> bool:
    """False when a label's kernel counters (``dropped=N``, ``delayed=N``) are all zero; True without counters."""
    counts = [int(n) for n in re.findall(r"\b(?:dropped|delayed)=(\d+)", detail)]
    return not counts or any(counts)


def _about(scope: str, hosts: set[str], vms: set[str]) -> bool:
    """A host finding, a pair or path with one of ``hosts`` at an end, or a VM finding about one of ``vms``."""
    return scope in vms or bool(hosts & set(scope.split("-")))


def compare(labels: pd.DataFrame, findings: list[dict[str, Any]], tenants: dict[str, Any]) -> list[Verdict]:
    """One verdict per label, then one per benign VM (no compromise label) with a medium/high compromise finding."""
    ports = _ports(tenants)
    alarms = [f for f in findings if f.get("severity") in ALARMS]
    out: list[Verdict] = []
    for lab in labels.itertuples(index=False):
        slack = int(SLACK_S[str(lab.kind)] * 1e9)
        lo, hi = int(lab.start_ns) - slack, int(lab.end_ns) + slack
        near = [f for f in alarms if int(f["start_ns"]) <= hi and int(f["end_ns"]) >= lo]
        if lab.kind == "compromise":
            hits = [f for f in near if f["kind"] == "compromise" and str(lab.scope) in (f.get("ip"), f.get("scope"))]
        else:
            hosts, vms = _fault_places(lab, ports)
            hits = [f for f in near if f["kind"] == "fault" and _about(str(f["scope"]), hosts, vms)]
        best = max(hits, key=lambda f: (f["severity"] == "high", f["score"]), default=None)
        found = f"{best['severity']} {best['type']} {best['scope']}" if best else ""
        out.append(Verdict(f"{lab.kind}/{lab.scenario}", str(lab.scope), int(lab.start_ns), int(lab.end_ns), found,
                           exercised(str(lab.detail))))  # fmt: skip
    attacked = {str(s) for s in labels.loc[labels["kind"] == "compromise", "scope"]}
    for f in alarms:
        if f["kind"] == "compromise" and str(f.get("ip", "")) and str(f.get("ip")) not in attacked:
            out.append(Verdict("benign VM", str(f["ip"]), int(f["start_ns"]), int(f["end_ns"]),
                               f"{f['severity']} {f['type']} {f['scope']}"))  # fmt: skip
    return out


def load_and_compare(run_dir: str | Path, workspace: str | Path) -> list[Verdict]:
    run_dir, workspace = Path(run_dir), Path(workspace)
    path = workspace / "findings" / "findings.json"
    if not path.is_file():
        raise InputNotFoundError("no findings: run `netsentry run` or `inspect` on the workspace first", path=str(path))
    findings = json.loads(path.read_text())["findings"]
    tenants = yaml.safe_load((run_dir / "tenants.yaml").read_text()) or {}
    return compare(read_labels(run_dir / "labels.csv"), findings, tenants)


def _clock(ns: int) -> str:
    return pd.Timestamp(ns, unit="ns").strftime("%H:%M:%S")


def main(argv: list[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    verdicts = load_and_compare(argv[0], argv[1])
    table = Table(title="what the lab did → what netsentry found", title_justify="left")
    for col in ("event", "scope", "from", "to", "found"):
        table.add_column(col)
    for v in verdicts:
        shown = (
            f"[red]false alarm:[/] {v.found}"
            if v.event == "benign VM"
            else v.found
            or ("[red]missed[/]" if v.exercised else "not exercised (the kernel dropped and delayed nothing)")
        )
        table.add_row(v.event, v.scope, _clock(v.start_ns), _clock(v.end_ns), shown)
    Console(width=140).print(table)
    events = [v for v in verdicts if v.event != "benign VM" and (v.exercised or v.found)]
    idle = sum(1 for v in verdicts if v.event != "benign VM" and not (v.exercised or v.found))
    false = sum(1 for v in verdicts if v.event == "benign VM")
    unexercised = f" ({idle} fault(s) not exercised)" if idle else ""
    print(
        f"{sum(bool(v.found) for v in events)} of {len(events)} events found{unexercised}; {false} false alarm(s) "
        "on benign VMs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
