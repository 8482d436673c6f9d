"""ARP findings with known answers: a sweep of a /24 is a scan naming its sender's MAC and counts; a host resolving
a few neighbours is not; two MACs claiming one address is spoofing naming both; one MAC announcing its own address
again and again is not; the real ARP scan (hs-arpScan) is found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netsentry.pipeline.capture.stage import run_capture
from netsentry.pipeline.cli import app
from netsentry.pipeline.inspect.arp import SCAN_TARGETS, SPAN_NS, arp_findings, read_arp
from netsentry.pipeline.inspect.findings import findings_document
from netsentry.pipeline.report import render_report
from tests import pcapbuild as pb
from tests.conftest import workspace_of
from tests.inspect.test_loss_evidence import store  # noqa: F401  (a rule-model store: no training)
from tests.paths import SHARED_DATA

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
SCANNER, SCANNER_MAC = "10.1.2.250", "02:00:00:00:00:77"
GW, GW_MAC, EVIL_MAC = "10.1.2.1", "02:00:00:00:00:01", "02:00:00:00:00:66"
ARP_SCAN = SHARED_DATA / "open" / "sgr-favilli" / "hs-arpScan.pcap"


def frame(body: bytes, src: str, dst: str = pb.MAC_BROADCAST) -> bytes:
    return pb.ethernet(body, pb.ETH_ARP, src=src, dst=dst)


def findings_of(tmp_path: Path, frames: list[tuple[int, bytes]]) -> list:
    """The ARP findings of a capture of ``(ts_ns, frame)`` records, through capture and the workspace's arp table."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = pb.write_pcap(tmp_path / "arp.pcap", [pb.Record(f, ts_ns=t) for t, f in frames], pb.LINKTYPE_ETHERNET)
    run_capture([path], tmp_path / "ws")
    return arp_findings(read_arp(str(tmp_path / "ws")))


def sweep(n: int, *, gap_ns: int = 4 * MS, answered: int = 0) -> list[tuple[int, bytes]]:
    """``SCANNER`` asks for 10.1.2.1 .. 10.1.2.n, ``gap_ns`` apart; the first ``answered`` targets reply."""
    out = []
    for k in range(1, n + 1):
        target, t = f"10.1.2.{k}", T0 + k * gap_ns
        out.append((t, frame(pb.arp_request(SCANNER, target, sender_mac=SCANNER_MAC), SCANNER_MAC)))
        if k <= answered:
            mac = f"02:00:00:00:01:{k:02x}"
            reply = pb.arp_reply(target, SCANNER, sender_mac=mac, target_mac=SCANNER_MAC)
            out.append((t + MS, frame(reply, mac, SCANNER_MAC)))
    return out


def test_a_sweep_of_a_subnet_is_an_arp_scan_with_its_counts_and_mac(tmp_path: Path) -> None:
    (f,) = findings_of(tmp_path, sweep(200, answered=3) + sweep(200)[:20])  # 20 asked twice: still 200 targets
    assert (f.kind, f.type, f.scope, f.ip, f.severity) == ("compromise", "arp_scan", SCANNER, SCANNER, "high")
    ev = f.evidence
    assert (ev["mac"], ev["requests"], ev["distinct_targets"], ev["answered"]) == (SCANNER_MAC, 220, 200, 3)
    assert ev["span_distinct_targets"] == 200 and ev["target_prefix"] == "10.1.2.0/24"
    assert f.start_ns == T0 + 4 * MS and f.end_ns == T0 + 800 * MS
    assert f.summary == f"{SCANNER} ({SCANNER_MAC}) asked ARP for 200 addresses of 10.1.2.0/24 in 0.8 s, 3 answered"


def test_a_sweep_just_past_the_bound_is_medium_and_one_at_the_bound_is_nothing(tmp_path: Path) -> None:
    (f,) = findings_of(tmp_path / "a", sweep(SCAN_TARGETS + 1))
    assert f.severity == "medium" and f.evidence["distinct_targets"] == SCAN_TARGETS + 1
    assert findings_of(tmp_path / "b", sweep(SCAN_TARGETS)) == []


def test_targets_spread_wider_than_a_minute_are_not_a_scan(tmp_path: Path) -> None:
    """200 addresses at one per 0.4 s span 80 s: at most 150 new in one minute, still a scan; at one per 2 s,
    30 in a minute, ordinary resolution."""
    (f,) = findings_of(tmp_path / "a", sweep(200, gap_ns=400 * MS))
    assert f.evidence["span_distinct_targets"] == SPAN_NS // (400 * MS)
    assert findings_of(tmp_path / "b", sweep(200, gap_ns=2000 * MS)) == []


def test_a_mostly_answered_sweep_is_a_busy_router_not_a_scan(tmp_path: Path) -> None:
    assert findings_of(tmp_path, sweep(200, answered=150)) == []


def test_a_host_resolving_a_few_neighbours_again_and_again_is_not_flagged(tmp_path: Path) -> None:
    frames = []
    for k in range(600):  # one request every 0.5 s over 5 minutes, to five neighbours, every one answered
        target, t = f"10.1.2.{k % 5 + 1}", T0 + k * 500 * MS
        frames.append((t, frame(pb.arp_request(SCANNER, target, sender_mac=SCANNER_MAC), SCANNER_MAC)))
        reply = pb.arp_reply(target, SCANNER, sender_mac=f"02:00:00:00:01:0{k % 5 + 1}", target_mac=SCANNER_MAC)
        frames.append((t + MS, frame(reply, pb.MAC_B, SCANNER_MAC)))
    assert findings_of(tmp_path, frames) == []


def spoofing_frames() -> list[tuple[int, bytes]]:
    return [
        (T0, frame(pb.arp_request("10.1.2.5", GW, sender_mac=pb.MAC_A), pb.MAC_A)),
        (T0 + MS, frame(pb.arp_reply(GW, "10.1.2.5", sender_mac=GW_MAC, target_mac=pb.MAC_A), GW_MAC, pb.MAC_A)),
        (T0 + 2 * MS, frame(pb.arp_request("10.1.2.6", GW, sender_mac=pb.MAC_B), pb.MAC_B)),
        (T0 + 3 * MS, frame(pb.arp_reply(GW, "10.1.2.6", sender_mac=GW_MAC, target_mac=pb.MAC_B), GW_MAC, pb.MAC_B)),
        *[
            (T0 + (10 + k) * MS, frame(pb.gratuitous_arp(GW, sender_mac=EVIL_MAC, reply=True), EVIL_MAC))
            for k in range(3)
        ],
    ]


def test_two_macs_claiming_one_address_is_spoofing_naming_both(tmp_path: Path) -> None:
    (f,) = findings_of(tmp_path, spoofing_frames())
    assert (f.kind, f.type, f.scope, f.severity) == ("compromise", "arp_spoofing", GW, "high")
    ev = f.evidence
    assert [(c["mac"], c["address"], c["replies"], c["gratuitous"]) for c in ev["claimants"]] == [
        (GW_MAC, GW, 2, 0),
        (EVIL_MAC, GW, 0, 3),
    ]
    assert ev["first_mac"] == GW_MAC and ev["gateway"] is True and ev["asked_by"] == 2
    assert f.summary == f"gateway {GW} (asked for by 2 hosts) is claimed by 2 MACs: {GW_MAC} first, then {EVIL_MAC}"
    html = render_report([f], {})
    assert EVIL_MAC in html and GW_MAC in html and "arp_spoofing" in html


def test_with_a_tenant_map_the_vm_whose_mac_claims_another_address_is_named(tmp_path: Path) -> None:
    findings_of(tmp_path, spoofing_frames())
    arp = read_arp(str(tmp_path / "ws"))
    ports = {int(EVIL_MAC.replace(":", ""), 16): (("10.1.2.7",), "acme", "web-3"),
             int(pb.MAC_A.replace(":", ""), 16): (("10.1.2.5",), "acme", "web-1")}  # fmt: skip
    (f,) = arp_findings(arp, ports)
    assert (f.type, f.scope_type, f.scope, f.ip, f.tenant, f.vm) == ("arp_spoofing", "vm", "acme/web-3", "10.1.2.7",
                                                                      "acme", "web-3")  # fmt: skip
    assert f.evidence["impostor"]["mac"] == EVIL_MAC and f.evidence["address"] == GW
    assert f.summary.startswith(f"acme/web-3 (10.1.2.7, MAC {EVIL_MAC}) claims gateway {GW}")
    # a port claiming its own address (its second one, on a NIC with two) is no impostor: the address is named
    ports[int(EVIL_MAC.replace(":", ""), 16)] = (("10.1.2.7", GW), "acme", "web-3")
    (f,) = arp_findings(arp, ports)
    assert (f.scope_type, f.scope, f.ip) == ("address", GW, GW)


def test_repeated_gratuitous_arp_by_one_mac_is_not_a_conflict(tmp_path: Path) -> None:
    frames = [(T0 + k * SPAN_NS // 6, frame(pb.gratuitous_arp(GW, sender_mac=GW_MAC, reply=k % 2 == 0), GW_MAC))
              for k in range(20)]  # fmt: skip
    frames.append((T0 + 10**12, frame(pb.arp_reply(GW, "10.1.2.5", sender_mac=GW_MAC, target_mac=pb.MAC_A), GW_MAC)))
    assert findings_of(tmp_path, frames) == []


def test_packet_text_in_the_report_is_escaped(tmp_path: Path) -> None:
    (f,) = findings_of(tmp_path, sweep(100))
    f.evidence["mac"] = "<script>x</script>"
    f.capture_point = "<b>cp</b>"
    html = render_report([f], {})
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<b>cp</b>" not in html
    assert '"mac": "<script>x</script>"' in findings_document([f], {})  # JSON keeps the value, escaped by readers


@pytest.mark.shared
def test_the_real_arp_scan_is_found(tmp_path: Path) -> None:
    if not ARP_SCAN.exists():
        pytest.skip(f"{ARP_SCAN} is absent")
    run_capture([ARP_SCAN], tmp_path / "ws")
    (f,) = arp_findings(read_arp(str(tmp_path / "ws")))
    ev = f.evidence
    assert (f.type, f.scope, f.severity, ev["mac"]) == ("arp_scan", "10.0.0.128", "high", "00:0c:29:20:a8:7f")
    # 509 who-has for the 256 addresses of 10.0.0.0/24; the two for its own address are announcements, not questions
    assert (ev["requests"], ev["distinct_targets"], ev["answered"], ev["target_prefix"]) == (507, 255, 0, "10.0.0.0/24")
    assert ev["duration_s"] < 2


def test_a_workspace_without_an_arp_table_has_no_arp_findings(tmp_path: Path) -> None:
    assert read_arp(str(tmp_path)) is None and arp_findings(None) == []


def test_an_arp_only_capture_inspects_to_the_scan_with_exit_code_3(tmp_path: Path, store: str) -> None:  # noqa: F811
    """No IP packet, so no feature windows: the ARP finding still comes out, in the table, the JSON and the report."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = pb.write_pcap(tmp_path / "arp.pcap", [pb.Record(f, ts_ns=t) for t, f in sweep(100)], pb.LINKTYPE_ETHERNET)
    ws = workspace_of([path], tmp_path / "ws")
    r = CliRunner().invoke(app, ["inspect", "-w", str(ws), "--tracking-uri", store])
    assert r.exit_code == 3, r.output
    assert "compromise: arp_scan" in r.output and SCANNER_MAC in r.output
    (f,) = json.loads((ws / "findings" / "findings.json").read_text())["findings"]
    assert (f["type"], f["evidence"]["distinct_targets"], f["evidence"]["answered"]) == ("arp_scan", 100, 0)
    assert SCANNER_MAC in (ws / "report.html").read_text()


def test_the_cli_table_names_the_arp_finding_type(tmp_path: Path) -> None:
    from netsentry.pipeline.cli_render import _findings_table

    (f,) = findings_of(tmp_path, sweep(100))
    assert "compromise: arp_scan" in list(_findings_table([f], "rules").columns[1].cells)
