"""`netsentry lab` with ``vxlan: true`` (root and the lab's tools needed; skipped elsewhere): the VMs' traffic between
hosts and the gateway crosses the underlay in real kernel VXLAN, one VNI per VPC, which the capture stage reads back
to the right tenant; frames are wire-sized; host faults act on the host's underlay link. Also the scenario checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from netsentry.pipeline.capture.stage import CaptureOptions, run_capture
from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.features.labels import read_labels
from netsentry.pipeline.lab.scenario import load_lab_scenario
from netsentry.pipeline.lab.stage import run_lab
from netsentry.pipeline.lab.topology import existing_namespaces
from tests.lab.test_lab import NS, in_net, ip, needs_lab, span, v4

pytestmark = pytest.mark.xdist_group("lab")

SCENARIO = """
name: lab-vxlan-test
duration_s: 31
snaplen: 256
hosts: 2
client_period_s: 0.5
vxlan: true
internet: {cidr: 198.18.0.0/24, hosts: 2}
tenants:
  - name: acme
    cidr: 10.10.0.0/16
    subnets:
      - name: web
        cidr: 10.10.1.0/24
        vms: [{name: web-1, host: host0}, {name: web-2, host: host1}, {name: web-3, host: host1}]
      - name: app
        cidr: 10.10.2.0/24
        vms: [{name: app-1, host: host1}]
  - name: globex
    cidr: 172.20.0.0/16
    vni: 5001
    subnets:
      - name: gx
        cidr: 172.20.1.0/24
        vms: [{name: gx-1, host: host0}, {name: gx-2, host: host1}]
capture: [gateway, underlay, internet, "vm:web-1", "vm:web-2"]
events:
  - {kind: compromise, type: port_scan_vertical, target: web-2, start_s: 3, duration_s: 6,
     params: {victim: web-1, rate_pps: 300}}
  - {kind: fault, type: loss_burst, target: host1, start_s: 11, duration_s: 8, params: {loss_p: 0.25}}
  - {kind: fault, type: blackhole, target: host0, start_s: 22, duration_s: 4}
"""
WEB1, WEB2, WEB3 = ip("10.10.1.10"), ip("10.10.1.11"), ip("10.10.1.12")


@pytest.fixture(scope="module")
def vxlan_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    d = tmp_path_factory.mktemp("lab-vxlan")
    (d / "lab.yaml").write_text(SCENARIO)
    run_lab(load_lab_scenario(d / "lab.yaml"), d / "out")
    run_capture([d / "out"], d / "ws", CaptureOptions(tenants=d / "out" / "tenants.yaml"))
    pk = pd.read_parquet(d / "ws" / "packets")
    pk["src"], pk["dst"] = v4(pk["src_ip"]), v4(pk["dst_ip"])
    pk["point"] = pk["capture_point"].astype(str)
    return d, pk, read_labels(d / "out" / "labels.csv").set_index("scenario")


@needs_lab
@pytest.mark.slow
def test_each_vpc_crosses_the_underlay_in_its_vni(vxlan_run: tuple) -> None:
    d, pk, labels = vxlan_run
    tenants = yaml.safe_load((d / "out" / "tenants.yaml").read_text())
    assert {v["id"]: v["vni"] for v in tenants["vpcs"]} == {"acme-vpc": 1000, "globex-vpc": 5001}
    assert all(p["mac"].startswith("02:") for v in tenants["vpcs"] for s in v["subnets"] for p in s["ports"])
    manifest = json.loads((d / "out" / "_manifest.json").read_text())
    assert manifest["vxlan"] == {"underlay": "100.64.0.0/24", "vnis": {"acme-vpc": 1000, "globex-vpc": 5001}}
    pcaps = ["gateway-acme-vpc.pcap", "gateway-globex-vpc.pcap", "internet.pcap", "underlay.pcap", "vm-web-1.pcap",
             "vm-web-2.pcap"]  # fmt: skip
    assert sorted(p.name for p in (d / "out").glob("*.pcap")) == pcaps
    under = pk[(pk["point"] == "underlay.pcap") & (pk["ip_version"] == 4) & pk["proto"].isin([1, 6, 17])]
    assert len(under) > 1000 and set(under["vni"].unique()) == {1000, 5001}
    by_vni = under.groupby("vni")["tenant"].agg(lambda t: set(t.astype(str)))
    assert by_vni[1000] == {"acme"} and by_vni[5001] == {"globex"}  # the capture stage tells tenants by VNI
    assert int(labels.loc["port_scan_vertical", "vni"]) == 1000


@needs_lab
@pytest.mark.slow
def test_hosts_switch_between_themselves_and_route_through_the_gateway(vxlan_run: tuple) -> None:
    _, pk, labels = vxlan_run
    under = pk[pk["point"] == "underlay.pcap"]
    gw = pk[pk["point"].str.startswith("gateway-")]

    def between(df: pd.DataFrame, a: int, b: int) -> pd.DataFrame:
        return df[((df["src"] == a) & (df["dst"] == b)) | ((df["src"] == b) & (df["dst"] == a))]

    # web-1 (host0) and web-2 (host1) share a subnet: host to host in the tunnel, the gateway not on the path
    tunnelled = len(between(under, WEB1, WEB2))
    assert tunnelled > 20 and len(between(gw, WEB1, WEB2)) < 0.05 * tunnelled
    # web-2 and web-3 share host1 and a subnet: switched on the host, never on the underlay
    assert len(between(under, WEB2, WEB3)) == 0 and len(between(pk[pk["point"] == "vm-web-2.pcap"], WEB2, WEB3)) > 20
    # the scan crosses the tunnel: nmap's SYNs from web-2 to web-1 in VNI 1000, inside the scan's span (SSH and HTTP
    # take the everyday client's too)
    s, e = span(labels, "port_scan_vertical", pad_s=0.5)
    syns = between(under, WEB1, WEB2)
    syns = syns[(syns["src"] == WEB2) & (syns["tcp_flags"] == 0x02) & ~syns["dst_port"].isin([22, 80])]
    assert len(syns) > 300 and syns["ts_ns"].between(s, e).all() and (syns["vni"] == 1000).all()


@needs_lab
@pytest.mark.slow
def test_frames_are_wire_sized(vxlan_run: tuple) -> None:
    _, pk, _ = vxlan_run
    assert pk.loc[pk["point"] == "vm-web-2.pcap", "frame_len"].max() <= 1450 + 14  # the VMs' MTU under VXLAN
    assert pk["frame_len"].max() <= 1514  # no offload super-frames anywhere
    assert (pk.loc[pk["point"] == "vm-web-2.pcap", "frame_len"] > 1400).sum() > 50  # bulk downloads fill the MTU


@needs_lab
@pytest.mark.slow
def test_host_faults_act_on_the_underlay_link(vxlan_run: tuple) -> None:
    _, pk, labels = vxlan_run
    s, e = span(labels, "loss_burst")
    # the fabric's capture sees host1's frames as they arrive, before its bridge drops any: those to web-1 (host0)
    # or the internet should reach web-1's port or the gateway's VPC bridges
    on_host1 = [WEB2, WEB3, ip("10.10.2.10"), ip("172.20.1.11")]
    under = pk[(pk["point"] == "underlay.pcap") & (pk["ip_version"] == 4)]
    sent = under[under["src"].isin(on_host1) & ((under["dst"] == WEB1) | in_net(under["dst"], "198.18.0.0/24"))]
    after = pk.loc[pk["point"].str.startswith("gateway-") | (pk["point"] == "vm-web-1.pcap"), "pkt_hash"]
    arrived = np.isin(sent["pkt_hash"], after)

    def delivered(a: int, b: int) -> float:
        inside = sent["ts_ns"].between(a, b).to_numpy()
        assert inside.sum() >= 40
        return float(arrived[inside].mean())

    assert 0.6 < delivered(s + NS // 2, e - NS // 2) < 0.92  # 25 % dropped on host1's link into the fabric
    assert delivered(s - 8 * NS, s - NS) > 0.99
    s, e = span(labels, "blackhole")  # host0's underlay link down: nothing of web-1's enters the fabric
    from_web1 = pk[(pk["point"] == "underlay.pcap") & (pk["src"] == WEB1)]  # past its tap, into the fabric
    assert from_web1["ts_ns"].between(s + NS // 5, e - NS // 5).sum() == 0
    assert from_web1["ts_ns"].between(s - 5 * NS, s).sum() > 10 and from_web1["ts_ns"].between(e, e + 4 * NS).sum()
    assert existing_namespaces() == []


@needs_lab
@pytest.mark.slow
def test_a_load_balancers_prober_checks_every_vm_without_a_word(vxlan_run: tuple) -> None:
    """The internet host no event uses (198.18.0.12) connects to every VM's port 80 every 5 s and resets at once."""
    _, pk, _ = vxlan_run
    probes = pk[(pk["point"] == "internet.pcap") & (pk["proto"] == 6) & (pk["src"] == ip("198.18.0.12"))
                & (pk["dst_port"] == 80)]  # fmt: skip
    syns = probes[(probes["tcp_flags"] & 0x12) == 0x02].groupby("dst").size()
    vms = {WEB1, WEB2, WEB3, ip("10.10.2.10"), ip("172.20.1.10"), ip("172.20.1.11")}
    assert set(syns.index) == vms and syns.min() >= 3  # ~25 s of checks, a few lost to the faults
    assert (probes["payload_len"] == 0).all()
    # every check the VM answered is closed by the prober's reset (a SYN lost to a fault is retried, never reset)
    inet = pk[(pk["point"] == "internet.pcap") & (pk["proto"] == 6)]
    synack = (inet["tcp_flags"] & 0x12) == 0x12
    answered = inet[(inet["dst"] == ip("198.18.0.12")) & (inet["src_port"] == 80) & synack]
    reset = probes[(probes["tcp_flags"] & 0x04) != 0]
    checks = set(zip(answered["src"], answered["dst_port"], strict=True))
    assert len(checks) >= 3 * len(vms)
    assert len(checks & set(zip(reset["dst"], reset["src_port"], strict=True))) >= 0.95 * len(checks)


def test_vxlan_scenario_checks(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    for text, match in [
        (SCENARIO.replace("vxlan: true", "vxlan: false"), r"tenants\[1\]\.vni.*with vxlan: true"),
        (SCENARIO.replace("vni: 5001", "vni: 0"), r"tenants\[1\]\.vni: a unique integer 1\.\.16777215"),
        (SCENARIO.replace("vxlan: true", "vxlan: yes please"), r"vxlan: true or false"),
        (SCENARIO.replace("vxlan: true", "vxlan: false").replace("    vni: 5001\n", ""), r"'underlay'.*vxlan: true"),
        (SCENARIO.replace("hosts: 2\n", "hosts: 2\nunderlay: {cidr: 10.10.1.0/24}\n"), r"underlay\.cidr.*overlap"),
    ]:
        p.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_lab_scenario(p)
    p.write_text(SCENARIO.replace("vni: 5001", "vni: 1000"))
    assert load_lab_scenario(p).vnis == {"acme-vpc": 1001, "globex-vpc": 1000}  # declared kept, the rest skip it
    sc = load_lab_scenario(Path(__file__).parents[2] / "configs" / "lab" / "tools.yaml")
    assert sc.vxlan and "underlay" in sc.capture and "bridge" in sc.tools()
