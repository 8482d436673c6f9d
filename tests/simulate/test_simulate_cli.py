"""`netsentry simulate` end to end: outputs, determinism, the tenant map and labels it writes."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from netsentry.pipeline.capture.tenants import load_tenant_map
from netsentry.pipeline.cli import app
from netsentry.pipeline.simulate.events import LABEL_COLUMNS
from netsentry.pipeline.simulate.scenario import load_scenario
from tests.paths import REPO as ROOT

SCENARIOS = sorted((ROOT / "configs" / "scenarios").rglob("*.yaml"))
runner = CliRunner()


def run(*args: object) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_shipped_scenario_is_valid(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.events, f"{path.name} injects nothing"


def _digest(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_simulate_writes_pcaps_tenants_and_labels_deterministically(tmp_path: Path) -> None:
    scenario = ROOT / "configs" / "scenarios" / "behaviours" / "loss_burst.yaml"
    code, out = run("simulate", "-s", scenario, "-o", tmp_path / "a", "--seed", 4)
    assert code == 0, out
    assert "loss_burst" in out and "packets written" in out
    assert run("simulate", "-s", scenario, "-o", tmp_path / "b", "--seed", 4)[0] == 0
    assert run("simulate", "-s", scenario, "-o", tmp_path / "c", "--seed", 5)[0] == 0
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert a == b
    assert a["vm.pcap"] != c["vm.pcap"]
    assert {"vm.pcap", "host.pcap", "gateway.pcap", "tenants.yaml", "labels.csv"} <= set(a)
    with (tmp_path / "a" / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == LABEL_COLUMNS
    assert [(r["kind"], r["scenario"], r["scope"]) for r in rows] == [("fault", "loss_burst", "host1")]
    assert int(rows[0]["end_ns"]) - int(rows[0]["start_ns"]) == 5_000_000_000


def test_simulated_cloud_is_what_capture_labels_with(tmp_path: Path) -> None:
    scenario = ROOT / "configs" / "scenarios" / "behaviours" / "port_scan_vertical.yaml"
    assert run("simulate", "-s", scenario, "-o", tmp_path / "sim", "--duration", 20)[0] == 0
    tmap = load_tenant_map(tmp_path / "sim" / "tenants.yaml")
    assert tmap.lookup_text("10.9.1.10") == ("lab", "lab-web-1")
    ws = tmp_path / "ws"
    code, out = run("capture", tmp_path / "sim" / "vm.pcap", "-w", ws, "--tenants", tmp_path / "sim" / "tenants.yaml")
    assert code == 0, out
    tenants = set(pq.read_table(ws / "packets", columns=["tenant"]).column("tenant").to_pylist())
    assert tenants == {"lab"}  # every packet has a cloud end


def test_bad_scenario_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncloud: {tenants: []}\n")
    code, out = run("simulate", "-s", bad, "-o", tmp_path / "o")
    assert code == 2 and "bad.yaml" in out and "no VMs" in out
    good = ROOT / "configs" / "scenarios" / "behaviours" / "port_scan_vertical.yaml"
    text = good.read_text().replace("type: port_scan_vertical", "type: port_scan_diagonal")
    odd = tmp_path / "odd.yaml"
    odd.write_text(text)
    code, out = run("simulate", "-s", odd, "-o", tmp_path / "o2")
    assert code == 2 and "port_scan_diagonal" in out and "port_scan_vertical" in out


@pytest.mark.skipif(__import__("shutil").which("tshark") is None, reason="tshark not installed")
def test_demo_scenario_is_clean_for_tshark_and_labelled(tmp_path: Path) -> None:
    import subprocess

    code, out = run("simulate", "-s", ROOT / "configs" / "scenarios" / "demo.yaml", "-o", tmp_path / "demo")
    assert code == 0, out
    pcap = tmp_path / "demo" / "vm.pcap"
    bad = subprocess.run(["tshark", "-r", str(pcap), "-Y", "_ws.malformed || _ws.expert.severity >= 8388608"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert bad == ""
    with (tmp_path / "demo" / "labels.csv").open() as f:
        kinds = {(r["kind"], r["scenario"]) for r in csv.DictReader(f)}
    assert kinds == {("compromise", "ssh_bruteforce"), ("fault", "loss_burst")}


def test_overlay_tenants_reusing_a_cidr_are_told_apart_by_vni(tmp_path: Path) -> None:
    """On the underlay by the VXLAN header; at the VM taps (no overlay header) by the ports' MACs, which the
    simulated tenant map declares: tenants reusing a CIDR get the same VNIs at both points."""
    scenario = tmp_path / "two.yaml"
    scenario.write_text(
        "name: two\nduration_s: 15\nseed: 2\noverlay: vxlan\ncapture_points: [vm, host]\n"
        "cloud:\n  hosts: 2\n  external_hosts: 20\n  tenants:\n"
        "    - name: acme\n      vpcs: [{id: a, cidr: 10.0.0.0/16, vni: 100, subnets: [{name: s, cidr: 10.0.1.0/24,"
        " vms: [{role: web, count: 2}, {role: db}]}]}]\n"
        "    - name: globex\n      vpcs: [{id: g, cidr: 10.0.0.0/16, vni: 200, subnets: [{name: s, cidr: 10.0.1.0/24,"
        " vms: [{role: web, count: 2}, {role: db}]}]}]\n"
        "events: [{kind: compromise, type: c2_beacon, target: acme-web-1, start_s: 1, duration_s: 10,"
        " params: {period_s: 2}}]\n"
    )
    assert run("simulate", "-s", scenario, "-o", tmp_path / "sim")[0] == 0
    ws = tmp_path / "ws"
    code, out = run("capture", tmp_path / "sim" / "host.pcap", "-w", ws, "--tenants", tmp_path / "sim" / "tenants.yaml")
    assert code == 0, out
    t = pq.read_table(ws / "packets", columns=["vni", "tenant"]).to_pandas()
    assert set(zip(t["vni"], t["tenant"], strict=True)) == {(100, "acme"), (200, "globex")}
    tenants = yaml.safe_load((tmp_path / "sim" / "tenants.yaml").read_text())
    macs = [p["mac"] for v in tenants["vpcs"] for s in v["subnets"] for p in s["ports"]]
    assert len(set(macs)) == len(macs) == 6  # one per port, although the addresses repeat across tenants
    tap = tmp_path / "tap"
    code, out = run("capture", tmp_path / "sim" / "vm.pcap", "-w", tap, "--tenants", tmp_path / "sim" / "tenants.yaml")
    assert code == 0, out
    t = pq.read_table(tap / "packets", columns=["vni", "tenant", "vm"]).to_pandas()
    assert set(zip(t["vni"], t["tenant"], strict=True)) == {(100, "acme"), (200, "globex")}
    assert {"acme-web-1", "globex-web-1"} <= set(t["vm"])
