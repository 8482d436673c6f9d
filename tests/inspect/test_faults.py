"""Fault incidents from scored fault windows: merging runs, clustering related scopes, type and severity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from netsentry.pipeline.core.tracking import ModelRef
from netsentry.pipeline.features.faults.catalogue import FAULT_FEATURES
from netsentry.pipeline.inspect.faults import cluster, fault_findings, fault_type, primary_scope, scope_incidents
from netsentry.pipeline.inspect.scoring import severity

T0 = 1_767_621_600_000_000_000
S = 10**9
VM_HOSTS = {"acme/web-1": "host2", "acme/web-2": "host2", "acme/db-1": "host3"}
MODEL = ModelRef("models:/netsentry-faults@champion", "netsentry-faults", "4")


def windows(flagged: dict[tuple[str, str], list[int]], seconds: int = 30, **features: float) -> pd.DataFrame:
    """Every scope × second of a 30 s capture; ``flagged`` scopes score 5 (over a threshold of 1) there."""
    scopes = [("host", "host2"), ("host", "host3"), ("host", "gateway"), ("host_pair", "gateway-host2"),
              ("host_pair", "host2-host3"), ("host_pair", "gateway-host3"), ("vm", "acme/web-1"),
              ("vm", "acme/web-2"), ("vm", "acme/db-1"), ("capture_point", "host.pcap")]  # fmt: skip
    rows = []
    for stype, scope in scopes:
        for t in range(seconds):
            hit = t in flagged.get((stype, scope), [])
            row = {name: 0.0 for name in FAULT_FEATURES}
            row.update(packets=100.0, packets_per_s=100.0, tcp_packets=100.0, tcp_data_packets=80.0,
                       handshake_rtt_p99_ms=2.0, handshake_rtt_ratio=1.0, hop_delay_ratio=1.0, burstiness=3.0,
                       max_packets_per_ms=2.0)  # fmt: skip
            if hit:
                row.update(features)
            row.update(scope_type=stype, scope=scope, window_start_ns=T0 + t * S, window_s=1.0,
                       score=5.0 if hit else 0.1, flag=int(hit), threshold=1.0,
                       benign_tail=0.0 if hit else 0.5)  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)


def test_runs_of_flagged_windows_merge_across_one_quiet_window() -> None:
    df = windows({("host", "host2"): [3, 4, 6, 7, 12]})
    incs = scope_incidents(df)
    assert [(i.start_ns - T0) // S for i in incs] == [3, 12]
    assert [(i.end_ns - T0) // S for i in incs] == [8, 13]


def test_a_lossy_uplink_is_one_incident_at_the_host() -> None:
    span = [10, 11, 12, 13]
    hit = {
        (t, s): span
        for t, s in [
            ("host", "host2"),
            ("host_pair", "gateway-host2"),
            ("host_pair", "host2-host3"),
            ("vm", "acme/web-1"),
            ("vm", "acme/web-2"),
            ("capture_point", "host.pcap"),
        ]
    }
    # 12 retransmitted data segments of 80 per window, in 4 connections: a lossy link by the minimum evidence rule
    # (the windows once carried retransmissions with a data retransmission rate of 0, which no capture produces)
    df = windows(hit, retransmissions=12.0, retransmission_rate=12 / 80, retransmitting_flows=4.0, dup_acks=20.0)
    found = fault_findings(df, VM_HOSTS, MODEL)
    assert len(found) == 1
    f = found[0]
    assert (f.scope_type, f.scope, f.type, f.severity) == ("host", "host2", "loss", "high")
    assert (f.start_ns - T0) // S == 10 and (f.end_ns - T0) // S == 14 and f.windows == 4
    related = {r["scope"] for r in f.evidence["related_scopes"]}
    assert related == {"gateway-host2", "host2-host3", "acme/web-1", "acme/web-2", "host.pcap"}
    assert f.evidence["magnitude"]["retransmission_rate"] == pytest.approx(48 / 320)
    assert "link host2" in f.summary and "retransmissions" in f.summary
    assert f.model_version == "4"


def test_one_vm_with_its_host_is_reported_at_the_vm_and_unrelated_faults_stay_apart() -> None:
    hit = {("vm", "acme/db-1"): [5, 6], ("host", "host3"): [5, 6], ("host_pair", "gateway-host2"): [5, 6, 7]}
    found = fault_findings(windows(hit, rst_packets=60.0), VM_HOSTS, MODEL)
    assert sorted((f.scope_type, f.scope) for f in found) == [("host_pair", "gateway-host2"), ("vm", "acme/db-1")]
    assert {f.type for f in found} == {"reset_storm"}


def test_a_capture_point_incident_joins_the_cluster_it_overlaps_or_stands_alone() -> None:
    df = windows({("host", "host2"): [3, 4], ("host_pair", "gateway-host2"): [3, 4],
                  ("host_pair", "host2-host3"): [3, 4], ("capture_point", "host.pcap"): [4, 20]})  # fmt: skip
    groups = cluster(scope_incidents(df), VM_HOSTS)
    shapes = sorted(sorted(m.scope for m in g) for g in groups)
    assert shapes == [["gateway-host2", "host.pcap", "host2", "host2-host3"], ["host.pcap"]]
    big = next(g for g in groups if len(g) == 4)
    assert primary_scope(big).scope == "host2"


def test_two_faults_in_sequence_chained_by_a_scope_flagged_in_between_are_two_findings() -> None:
    # host2's uplink loses at 5-8 s, host3's at 16-19 s; the gateway stays flagged from 6 to 20 s (its own ambient
    # trouble), which links both to one group by time and shared hosts: each fault is still reported at its host
    hit = {("host", "host2"): [5, 6, 7, 8], ("host_pair", "gateway-host2"): [5, 6, 7, 8],
           ("host_pair", "host2-host3"): [5, 6, 7, 8, 16, 17, 18, 19], ("vm", "acme/web-1"): [5, 6, 7, 8],
           ("host", "gateway"): list(range(6, 21)),
           ("host", "host3"): [16, 17, 18, 19], ("host_pair", "gateway-host3"): [16, 17, 18, 19],
           ("vm", "acme/db-1"): [16, 17, 18, 19]}  # fmt: skip
    df = windows(hit, retransmissions=12.0, retransmission_rate=12 / 80, retransmitting_flows=4.0)
    found = fault_findings(df, VM_HOSTS, MODEL)
    hosts = sorted(((f.start_ns - T0) // S, f.scope) for f in found if f.scope_type == "host")
    assert hosts == [(5, "host2"), (16, "host3")]
    later = next(f for f in found if f.scope == "host3")
    assert {r["scope"] for r in later.evidence["related_scopes"]} >= {"gateway-host3", "acme/db-1"}


@pytest.mark.parametrize("silent", ["host2", "host3"])
def test_of_two_hosts_hit_the_one_gone_silent_is_named(silent: str) -> None:
    # a black hole on one host: both ends of its conversations are hit, but only its own windows went quiet
    span = [5, 6, 7, 8]
    hit = {(t, s): span for t, s in [("host", "host2"), ("host", "host3"), ("host_pair", "gateway-host2"),
                                     ("host_pair", "host2-host3"), ("host_pair", "gateway-host3"), ("vm", "acme/web-1"),
                                     ("vm", "acme/db-1")]}  # fmt: skip
    df = windows(hit, packets_ratio=1.0, syn_unanswered=3.0, retransmissions=4.0)
    quiet = (df["scope"] == silent) & (df["flag"] == 1)
    df.loc[quiet, "packets_ratio"] = np.array([0.04, 0.06, 0.3, 2.0])  # silent, then its senders' retries
    (f,) = fault_findings(df, VM_HOSTS, MODEL)
    assert (f.scope_type, f.scope) == ("host", silent)


@pytest.mark.parametrize("earlier_burst", [False, True])
@pytest.mark.parametrize("lossy", ["host2", "host3"])
def test_of_two_hosts_hit_the_one_losing_on_its_other_paths_too_is_named(lossy: str, earlier_burst: bool) -> None:
    # loss on one host's uplink: the far end of their busy pair loses as much on that pair, but only the lossy host
    # also loses on its way to the gateway (host2 has the more VMs hit, so counting names alone picks it); a burst of
    # 200 retransmissions the lossy host had 10 s earlier does not make this one its everyday loss
    other = "host3" if lossy == "host2" else "host2"
    span = [5, 6, 7, 8]
    hit = {(t, s): span for t, s in [("host", "host2"), ("host", "host3"), ("host_pair", "gateway-host2"),
                                     ("host_pair", "host2-host3"), ("host_pair", "gateway-host3"), ("vm", "acme/web-1"),
                                     ("vm", "acme/web-2"), ("vm", "acme/db-1")]}  # fmt: skip
    df = windows(hit, packets_ratio=1.0, retransmissions=10.0, retransmission_rate=10 / 80, retransmitting_flows=4.0,
                 dup_acks=20.0)  # fmt: skip
    flagged = df["flag"] == 1
    df.loc[flagged & (df["scope"] == lossy), "retransmissions"] = 14.0
    df.loc[flagged & (df["scope"] == f"gateway-{lossy}"), "retransmissions"] = 4.0
    df.loc[flagged & (df["scope"] == f"gateway-{other}"), "retransmissions"] = 0.0
    if earlier_burst:
        df.loc[(df["scope"] == lossy) & (df["window_start_ns"] == T0 + 20 * S), "retransmissions"] = 200.0
    (f,) = fault_findings(df, VM_HOSTS, MODEL)
    assert (f.type, f.scope_type, f.scope) == ("loss", "host", lossy)


def test_a_gateways_everyday_internet_loss_does_not_outweigh_a_lossy_host() -> None:
    # the gateway retransmits 3 segments a second all day (ambient loss on internet paths); during host2's loss burst
    # it sees host2's 2 as well. Counted raw, the gateway leaves 3 a second unexplained and host2 only 2; beyond
    # their usual, the gateway leaves none
    span = [5, 6, 7, 8]
    hit = {(t, s): span for t, s in [("host", "host2"), ("host", "gateway"), ("host_pair", "gateway-host2"),
                                     ("host_pair", "host2-host3"), ("host_pair", "gateway-host3"), ("vm", "acme/web-1"),
                                     ("vm", "acme/web-2")]}  # fmt: skip
    df = windows(hit, packets_ratio=1.0, retransmissions=2.0, retransmission_rate=2 / 80, retransmitting_flows=2.0,
                 dup_acks=6.0)  # fmt: skip
    flagged = df["flag"] == 1
    gateway = (df["scope_type"] == "host") & (df["scope"] == "gateway")
    df.loc[gateway, "retransmissions"] = 3.0
    df.loc[gateway & flagged, "retransmissions"] = 5.0
    df.loc[flagged & (df["scope"] == "host2"), "retransmissions"] = 4.0
    df.loc[flagged & (df["scope"] == "gateway-host3"), "retransmissions"] = 1.0
    df.loc[flagged & (df["scope"] == "host2-host3"), "retransmissions"] = 2.0
    (f,) = fault_findings(df, VM_HOSTS, MODEL)
    assert (f.type, f.scope_type, f.scope) == ("loss", "host", "host2")


def test_of_three_hosts_hit_pairwise_the_one_whose_every_busy_path_loses_is_named() -> None:
    # loss on host3's uplink, whose traffic in those seconds goes to host2 and the gateway: every path is between two
    # hit hosts, so no host has retransmissions its pairs with the others leave unexplained, and host2 is the most
    # named (two VMs); but the gateway's busy path to host2 shows no more than its everyday one retransmission a
    # second, while both of host3's paths lose
    span = [5, 6, 7, 8]
    scopes = [("host", "host2"), ("host", "host3"), ("host", "gateway"), ("host_pair", "gateway-host2"),
              ("host_pair", "host2-host3"), ("host_pair", "gateway-host3"), ("vm", "acme/web-1"), ("vm", "acme/web-2"),
              ("vm", "acme/db-1")]  # fmt: skip
    df = windows({scope: span for scope in scopes}, packets_ratio=1.0, retransmissions=10.0,
                 retransmission_rate=10 / 80, retransmitting_flows=4.0, dup_acks=20.0)  # fmt: skip
    flagged = df["flag"] == 1
    df.loc[df["scope"].isin(["gateway-host2", "gateway"]), "retransmissions"] = 1.0
    df.loc[flagged & (df["scope"] == "gateway"), "retransmissions"] = 11.0
    df.loc[flagged & (df["scope"] == "host3"), "retransmissions"] = 20.0
    (f,) = fault_findings(df, VM_HOSTS, MODEL)
    assert (f.type, f.scope_type, f.scope) == ("loss", "host", "host3")


@pytest.mark.parametrize("queued", ["host2", "host3"])
def test_of_two_hosts_delayed_alike_the_one_delayed_on_its_other_paths_too_is_named(queued: str) -> None:
    # a queue on one host's uplink: their pair's round trips grow alike at both ends, but only the queued host's
    # way to the gateway is slower by a hop too
    span = [5, 6, 7, 8]
    scopes = [
        ("host", "host2"),
        ("host", "host3"),
        ("host_pair", "host2-host3"),
        ("vm", "acme/web-1"),
        ("vm", "acme/web-2"),
        ("vm", "acme/db-1"),
        ("host_pair", "gateway-host2"),
        ("host_pair", "gateway-host3"),
    ]
    hit = {scope: span for scope in scopes}
    df = windows(hit, packets_ratio=1.0, handshake_rtt_ratio=40.0, handshake_rtt_p99_ms=80.0)
    df["hop_delay_worst_p50_ms"] = 0.01
    df.loc[(df["flag"] == 1) & (df["scope"] == f"gateway-{queued}"), "hop_delay_worst_p50_ms"] = 400.0
    (f,) = fault_findings(df, VM_HOSTS, MODEL)
    assert (f.type, f.scope_type, f.scope) == ("latency", "host", queued)


def test_refusals_by_a_router_name_the_host_they_all_come_from() -> None:
    # a subnet cut off at the gateway: its VMs' host looks worst by its paths and VMs, but every ICMP refusal came
    # from the gateway's router address (the gateway's windows count them all, each other host its share)
    span = [5, 6, 7]
    hit = {(t, s): span for t, s in [("host", "host2"), ("host_pair", "gateway-host2"), ("host_pair", "host2-host3"),
                                     ("vm", "acme/web-1"), ("vm", "acme/web-2"), ("host", "gateway")]}  # fmt: skip
    df = windows(hit, icmp_unreachable=2.0, connections=4.0, syn_unanswered=1.0)
    df.loc[(df["scope"] == "gateway") & (df["flag"] == 1), "icmp_unreachable"] = 6.0
    (f,) = fault_findings(df, VM_HOSTS, MODEL)
    assert (f.type, f.scope_type, f.scope) == ("unreachable", "host", "gateway")
    assert "host2" in {r["scope"] for r in f.evidence["related_scopes"]}
    # without refusals the same cluster stays at the VMs' host
    (f,) = fault_findings(windows(hit, syn_unanswered=4.0, packets_per_s=10.0), VM_HOSTS, MODEL)
    assert (f.type, f.scope) == ("black_hole", "host2")


def test_a_subnet_routers_refusals_are_named_at_the_gateway_it_lives_on() -> None:
    # the router address is on no port: the per-VM windows name it by its address, the tenant map puts it on the
    # gateway host
    df = windows({}, packets_ratio=1.0)
    router = windows({("vm", "acme/web-1"): [5, 6, 7]}, packets_ratio=1.0, icmp_unreachable=4.0, connections=4.0)
    router = router[router["scope"] == "acme/web-1"].assign(scope="10.0.1.1")
    df = pd.concat([df, router], ignore_index=True)
    (f,) = fault_findings(df, VM_HOSTS, MODEL, routers={"10.0.1.1": "gateway"})
    assert (f.type, f.scope_type, f.scope, f.evidence["router_address"]) == (
        "unreachable",
        "host",
        "gateway",
        "10.0.1.1",
    )
    (f,) = fault_findings(df, VM_HOSTS, MODEL)  # without the map's word, an address of its own
    assert (f.scope_type, f.scope) == ("vm", "10.0.1.1")


def test_host_names_with_dashes_are_split_correctly() -> None:
    hosts = {"acme/web-1": "rack-1"}
    df = windows({("host_pair", "gateway-host2"): [2]})
    df.loc[df["scope"] == "gateway-host2", "scope"] = "rack-1-rack-2"
    inc = scope_incidents(df)
    cluster(inc, hosts | {"x": "rack-2"})
    assert inc[0].hosts == frozenset({"rack-1", "rack-2"})


BASE = {"matched_loss_rate": 0.0, "lost_packets": 0.0, "syn_unanswered": 0.0, "packets_vs_baseline": 1.0,
        "rst_packets": 0.0, "packets": 1000.0, "rtt_p99_vs_baseline": 1.0, "handshake_rtt_ratio_max": 1.0,
        "hop_delay_ratio_max": 1.0, "retransmission_rate": 0.0, "retransmissions": 0.0, "dup_acks": 0.0,
        "burstiness_max": 2.0, "max_packets_per_ms": 3.0, "zero_windows": 0.0}  # fmt: skip


SILENT = {"packets_vs_baseline": 0.45, "baseline_packets_per_s": 100.0, "retransmissions": 7.0}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"matched_loss_rate": 0.9, "lost_packets": 40.0}, "black_hole"),
        ({"syn_unanswered": 12.0, "packets_vs_baseline": 0.1}, "black_hole"),
        ({"icmp_unreachable": 4.0, "syn_unanswered": 12.0, "packets_vs_baseline": 0.1}, "unreachable"),
        # a busy scope gone silent while its senders retry (a link down between short exchanges)
        ({"packets_vs_baseline": 0.05, "baseline_packets_per_s": 60.0, "retransmissions": 7.0}, "black_hole"),
        # ... most of its flagged windows silent, the last one its senders' burst of retries
        (SILENT | {"median_packets_vs_baseline": 0.04}, "black_hole"),
        (SILENT | {"median_packets_vs_baseline": 0.3}, "loss"),
        ({"packets_vs_baseline": 0.05, "baseline_packets_per_s": 8.0, "retransmissions": 7.0}, "loss"),  # quiet anyway
        ({"packets_vs_baseline": 0.05, "baseline_packets_per_s": 60.0, "retransmissions": 1.0}, "loss"),  # one retry
        ({"icmp_unreachable": 2.0, "retransmissions": 3.0}, "loss"),  # a refusal or two: not yet the network's word
        ({"icmp_unreachable": 6.0, "rst_packets": 7000.0, "connections": 7000.0}, "reset_storm"),  # amid a flood
        ({"rst_packets": 300.0}, "reset_storm"),
        ({"reset_connections": 12.0, "connections": 15.0, "retransmissions": 3.0}, "reset_storm"),
        ({"reset_connections": 6.0, "connections": 130.0, "retransmissions": 79.0}, "loss"),
        ({"rtt_p99_vs_baseline": 8.0}, "latency"),
        ({"hop_delay_ratio_max": 5.0, "retransmissions": 1.0, "retransmission_rate": 0.001}, "latency"),
        ({"retransmissions": 30.0, "retransmission_rate": 0.05, "rtt_p99_vs_baseline": 8.0}, "loss"),
        ({"dup_acks": 12.0}, "reordering"),  # was "loss": dup-ACKs without any retransmission are reordering
        ({"out_of_order": 5.0}, "reordering"),
        ({"dup_acks": 12.0, "retransmissions": 2.0}, "loss"),
        ({"burstiness_max": 200.0, "max_packets_per_ms": 80.0}, "microburst"),
        ({"burstiness_max": 300.0, "max_packets_per_ms": 3.0}, "other"),
        ({"silent_service_attempts": 6.0, "syn_unanswered": 6.0, "retransmissions": 12.0}, "silent_service"),
        ({"silent_service_attempts": 6.0, "retransmissions": 40.0, "data_retransmission_rate_max": 0.1}, "loss"),
        ({"silent_service_attempts": 2.0, "retransmissions": 4.0}, "loss"),  # one timeout and its retry: not yet
        ({"zero_windows": 4.0}, "zero_window"),
        ({}, "other"),
    ],
)
def test_fault_type_from_magnitude(change: dict[str, float], expected: str) -> None:
    assert fault_type(BASE | change) == expected


@pytest.mark.parametrize(
    ("windows_", "tail", "expected"),
    [
        (1, 0.5, "low"),
        (1, 0.001, "medium"),
        (2, 0.5, "medium"),
        (2, 0.0, "high"),
        (4, 0.5, "high"),
        (1, np.nan, "low"),
        (4, np.nan, "high"),
    ],
)
def test_severity(windows_: int, tail: float, expected: str) -> None:
    assert severity(windows_, tail, sustained=2) == expected


def test_nothing_flagged_is_no_finding() -> None:
    assert fault_findings(windows({}), VM_HOSTS, MODEL) == []
