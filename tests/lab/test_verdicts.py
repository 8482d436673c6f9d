"""Matching what a lab did with what was found: right place, within a window of the labelled span, medium or high."""

from __future__ import annotations

import pandas as pd

from netsentry.pipeline.lab.verdicts import compare

S = 1_000_000_000
T0 = 1_800_000_000 * S
PORTS = [{"ip": "10.10.1.10", "vm": "web-1", "host": "host0"}, {"ip": "10.10.1.11", "vm": "web-2", "host": "host1"}]
SUBNETS = [{"name": "web", "cidr": "10.10.1.0/24", "ports": PORTS}]
TENANTS = {"gateway": "gateway", "vpcs": [{"id": "v", "tenant": "acme", "cidr": "10.10.0.0/16", "subnets": SUBNETS}]}


def label(kind: str, scenario: str, scope: str, start_s: float, end_s: float, detail: str = "") -> dict:
    scope_type = "vm" if kind == "compromise" else "host"
    span = {"start_ns": T0 + int(start_s * S), "end_ns": T0 + int(end_s * S)}
    return {"kind": kind, "scenario": scenario, "scope_type": scope_type, "scope": scope, **span, "detail": detail}


def finding(kind: str, type_: str, scope: str, start_s: float, end_s: float, severity: str = "high",
            ip: str = "") -> dict:  # fmt: skip
    return {"kind": kind, "type": type_, "scope": scope, "ip": ip, "severity": severity, "score": 5.0,
            "start_ns": T0 + int(start_s * S), "end_ns": T0 + int(end_s * S)}  # fmt: skip


def test_events_found_missed_and_false_alarms() -> None:
    labels = pd.DataFrame([
        label("compromise", "port_scan_vertical", "10.10.1.11", 100, 110),
        label("compromise", "c2_beacon", "10.10.1.10", 100, 200),
        label("fault", "loss_burst", "host1", 300, 310),
        label("fault", "blackhole", "host0", 400, 405),
        label("fault", "config_change", "gateway", 500, 505, "host=gateway; subnet=10.10.1.0/24"),
    ])  # fmt: skip
    findings = [
        finding("compromise", "compromise", "acme/web-2", 60, 130, ip="10.10.1.11"),
        finding("compromise", "compromise", "acme/web-1", 0, 60, "low", ip="10.10.1.10"),  # low: no alarm
        finding("fault", "loss", "gateway-host1", 309, 311),  # a path with host1 at one end
        finding("fault", "loss", "host0", 408, 409),  # 3 s after the black hole: more than a fault window away
        finding("fault", "blackhole", "acme/web-2", 501, 503, "medium"),  # a VM of the changed subnet
        finding("compromise", "arp_scan", "10.10.1.12", 50, 51, ip="10.10.1.12"),  # nobody attacked it
    ]
    got = {(v.event, v.scope): v.found for v in compare(labels, findings, TENANTS)}
    assert got == {
        ("compromise/port_scan_vertical", "10.10.1.11"): "high compromise acme/web-2",
        ("compromise/c2_beacon", "10.10.1.10"): "",
        ("fault/loss_burst", "host1"): "high loss gateway-host1",
        ("fault/blackhole", "host0"): "",
        ("fault/config_change", "gateway"): "medium blackhole acme/web-2",
        ("benign VM", "10.10.1.12"): "high arp_scan 10.10.1.12",
    }


def test_a_fault_that_touched_no_packet_is_not_exercised_rather_than_missed() -> None:
    labels = pd.DataFrame([
        label("fault", "latency_spike", "host1", 100, 108, "tool=tbf; rate=200kbit; delayed=0; dropped=0"),
        label("fault", "latency_spike", "host1", 200, 208, "tool=tbf; rate=64kbit; delayed=41; dropped=0"),
        label("fault", "blackhole", "host0", 300, 305, "tool=link-down"),  # no counters: judged as ever
    ])  # fmt: skip
    got = [(v.found, v.exercised) for v in compare(labels, [], TENANTS)]
    assert got == [("", False), ("", True), ("", True)]
