"""`netsentry lab` with real namespaces, kernels and tools (root and the lab's tools needed; skipped elsewhere): every
labelled event is visible in the captured packets, in its labelled span and on its path only, and nothing is left
behind. Also the scenario checks and the clear errors, which need neither."""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from netsentry.pipeline.capture.stage import CaptureOptions, run_capture
from netsentry.pipeline.capture.tenants import load_tenant_map
from netsentry.pipeline.core.errors import ConfigError, LabError, ToolMissingError
from netsentry.pipeline.features.labels import read_labels
from netsentry.pipeline.inspect.arp import arp_findings, read_arp
from netsentry.pipeline.lab.scenario import load_lab_scenario
from netsentry.pipeline.lab.shell import BASE_TOOLS, require_root, require_tools
from netsentry.pipeline.lab.stage import run_lab
from netsentry.pipeline.lab.topology import existing_namespaces

NS = 1_000_000_000
pytestmark = pytest.mark.xdist_group("lab")  # one lab at a time (the lab's lock): all on one worker

SCENARIO = """
name: lab-test
duration_s: 62
snaplen: 256
hosts: 2
client_period_s: 0.5
internet: {cidr: 198.18.0.0/24, hosts: 2}
tenants:
  - name: acme
    cidr: 10.10.0.0/16
    subnets:
      - name: web
        cidr: 10.10.1.0/24
        vms: [{name: web-1, host: host0}, {name: web-2, host: host1}]
      - name: app
        cidr: 10.10.2.0/24
        vms: [{name: app-1, host: host1}]
capture: [gateway, internet, "vm:web-2", "vm:app-1"]
events:
  - {kind: compromise, type: port_scan_vertical, target: web-2, start_s: 3, duration_s: 8,
     params: {victim: web-1, rate_pps: 400}}
  - {kind: compromise, type: ping_sweep, target: app-1, start_s: 4, duration_s: 6, params: {rate_pps: 100}}
  - {kind: compromise, type: ssh_bruteforce, target: app-1, start_s: 4, duration_s: 8}
  - {kind: fault, type: loss_burst, target: host1, start_s: 13, duration_s: 7, params: {loss_p: 0.25}}
  - {kind: fault, type: config_change, target: app, start_s: 23, duration_s: 5}
  - {kind: fault, type: blackhole, target: host0, start_s: 31, duration_s: 5}
  - {kind: fault, type: latency_spike, target: host1, start_s: 39, duration_s: 7, params: {rate: 64kbit}}
  - {kind: compromise, type: ddos_syn, target: app-1, start_s: 38, duration_s: 9, params: {rate_pps: 300}}
  - {kind: fault, type: config_change, target: web, start_s: 46.5, duration_s: 4,
     params: {action: filter_pushed, answer: icmp}}
  - {kind: compromise, type: dns_tunnel, target: web-1, start_s: 3, duration_s: 18}
  - {kind: compromise, type: bruteforce, target: app-1, start_s: 4, duration_s: 8, params: {service: ftp, source: 1}}
  - {kind: compromise, type: bruteforce, target: web-1, start_s: 13, duration_s: 7, params: {service: http-auth}}
  - {kind: compromise, type: arp_spoofing, target: web-1, start_s: 52, duration_s: 7, params: {victim: web-2}}
"""


def lab_ready() -> str | None:
    """Why the lab cannot run here, or None."""
    try:
        require_root()
        require_tools([*BASE_TOOLS, "nmap", "hping3", "hydra", "iodine", "iodined", "ifconfig", "arpspoof", "vsftpd"])
    except (LabError, ToolMissingError) as e:
        return str(e)
    probe = f"nsl-probe-{os.getpid()}"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        return f"network namespaces not permitted here: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


NOT_READY = lab_ready()
needs_lab = pytest.mark.skipif(NOT_READY is not None, reason=f"lab not runnable: {NOT_READY}")


def v4(col: pd.Series) -> np.ndarray:
    """16-byte address column → IPv4 as uint32 (0 for IPv6)."""
    raw = np.frombuffer(b"".join(col.to_list()), dtype=np.uint8).reshape(-1, 16)
    return raw[:, 12:].copy().view(">u4").ravel().astype(np.uint32)


def ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def in_net(a: np.ndarray, cidr: str) -> np.ndarray:
    net = ipaddress.IPv4Network(cidr)
    return (a & int(net.netmask)) == int(net.network_address)


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    d = tmp_path_factory.mktemp("lab")
    (d / "lab.yaml").write_text(SCENARIO)
    res = run_lab(load_lab_scenario(d / "lab.yaml"), d / "out")
    run_capture([d / "out"], d / "ws", CaptureOptions(tenants=d / "out" / "tenants.yaml"))
    pk = pd.read_parquet(d / "ws" / "packets")
    pk["src"], pk["dst"] = v4(pk["src_ip"]), v4(pk["dst_ip"])
    pk["point"] = pk["capture_point"].astype(str)
    labels = read_labels(d / "out" / "labels.csv").set_index("scenario")
    assert len(res.labels) == 13
    return d, pk, labels, pd.read_parquet(d / "ws" / "arp")


def span(labels: pd.DataFrame, name: str, pad_s: float = 0.0, nth: int = 0) -> tuple[int, int]:
    """The ``nth`` (by start) label of ``name``, widened by ``pad_s``."""
    row = labels.loc[[name]].sort_values("start_ns").iloc[nth]
    return int(row["start_ns"] - pad_s * NS), int(row["end_ns"] + pad_s * NS)


@needs_lab
@pytest.mark.slow
def test_outputs_follow_the_simulate_contract(lab_run: tuple) -> None:
    d, pk, labels, _ = lab_run
    out = d / "out"
    names = sorted(p.name for p in out.glob("*.pcap"))
    assert names == ["gateway-app.pcap", "gateway-web.pcap", "internet.pcap", "vm-app-1.pcap", "vm-web-2.pcap"]
    manifest = (out / "_manifest.json").read_text()
    assert '"nmap": "Nmap version' in manifest and '"kernel"' in manifest
    # measured times: in order, inside the run, each about as long as planned
    planned = {
        "port_scan_vertical": 8,
        "ping_sweep": 6,
        "loss_burst": 7,
        "config_change": 5,
        "blackhole": 5,
        "latency_spike": 7,
    }
    for name, seconds in planned.items():
        s, e = span(labels, name)
        assert 0 < (e - s) / NS <= seconds + 1.0, name
    assert pk["ts_ns"].min() < labels["start_ns"].min() and pk["ts_ns"].max() > labels["end_ns"].max()
    # ports carry the MACs the tenant map declares: every VM packet at the VM taps is attributed to its VM
    at_tap = pk[pk["point"] == "vm-app-1.pcap"]
    assert (at_tap.loc[at_tap["src"] == ip("10.10.2.10"), "vm"].astype(str) == "app-1").all()


@needs_lab
@pytest.mark.slow
def test_nmap_scan_and_sweep_are_in_their_spans(lab_run: tuple) -> None:
    _, pk, labels, arp = lab_run
    attacker, victim = ip("10.10.1.11"), ip("10.10.1.10")
    syn = pk[(pk["point"] == "gateway-web.pcap") & (pk["src"] == attacker) & (pk["dst"] == victim)
             & (pk["proto"] == 6) & ((pk["tcp_flags"] & 0x12) == 0x02)]  # fmt: skip
    s, e = span(labels, "port_scan_vertical", 0.5)
    inside = syn[(syn["ts_ns"] >= s) & (syn["ts_ns"] <= e)]
    assert inside["dst_port"].nunique() >= 1000  # nmap's SYNs to ports 1-1024
    assert syn.loc[(syn["ts_ns"] < s) | (syn["ts_ns"] > e), "dst_port"].nunique() <= 2  # the client's own
    s, e = span(labels, "ping_sweep", 0.5)
    asked = arp[(arp["op"] == 1) & (arp["ts_ns"] >= s) & (arp["ts_ns"] <= e)]
    assert asked["target_ip"].nunique() >= 100  # the /24 swept (its ARP requests reach the gateway's bridge)


@needs_lab
@pytest.mark.slow
def test_hydra_guesses_at_sshd_in_its_span(lab_run: tuple) -> None:
    _, pk, labels, _ = lab_run
    guesser, victim = ip("198.18.0.11"), ip("10.10.2.10")
    inet = pk[(pk["point"] == "internet.pcap") & (pk["proto"] == 6)]
    syn = inet[(inet["src"] == guesser) & (inet["dst"] == victim) & (inet["dst_port"] == 22)
               & ((inet["tcp_flags"] & 0x12) == 0x02)]  # fmt: skip
    s, e = span(labels, "ssh_bruteforce", 0.5)
    assert syn["ts_ns"].between(s, e).sum() >= 8 and not (~syn["ts_ns"].between(s, e)).any()
    answers = inet[(inet["src"] == victim) & (inet["src_port"] == 22) & (inet["payload_len"] > 0)]
    assert answers["ts_ns"].between(s, e).sum() >= 8  # sshd's banners, key exchanges and refusals


@needs_lab
@pytest.mark.slow
def test_loss_only_on_the_faulted_host_and_in_its_span(lab_run: tuple) -> None:
    _, pk, labels, _ = lab_run
    s, e = span(labels, "loss_burst")
    # app-1 and web-2 are on host1: their packets leave the taps and must cross host1's uplinks to the gateway
    taps = {"vm-app-1.pcap": ip("10.10.2.10"), "vm-web-2.pcap": ip("10.10.1.11")}
    sent = pk[pk["point"].isin(list(taps)) & pk["src"].isin(list(taps.values())) & (pk["proto"] == 6)]
    seen = pk[pk["point"].str.startswith("gateway-") & (pk["proto"] == 6)]
    arrived = np.isin(sent["pkt_hash"], seen["pkt_hash"])

    def delivered(a: int, b: int) -> float:
        inside = sent["ts_ns"].between(a, b).to_numpy()
        assert inside.sum() >= 30
        return float(arrived[inside].mean())

    during, before = delivered(s + NS // 2, e - NS // 2), delivered(s - 12 * NS, s - NS)
    assert 0.6 < during < 0.92, during  # 25 % dropped at host1's uplinks
    assert before > 0.99, before
    web1 = pk[(pk["point"] == "gateway-web.pcap") & (pk["src"] == ip("10.10.1.10")) & pk["ts_ns"].between(s, e)]
    assert len(web1) >= 10  # host0 untouched: web-1 keeps talking through its uplink


@needs_lab
@pytest.mark.slow
def test_bottleneck_queues_on_the_faulted_host_only(lab_run: tuple) -> None:
    _, pk, labels, _ = lab_run
    s, e = span(labels, "latency_spike")
    app1 = ip("10.10.2.10")  # on host1, whose uplinks got a 64 kbit/s token bucket while app-1 answers a SYN flood
    sent = pk[(pk["point"] == "vm-app-1.pcap") & (pk["src"] == app1)]
    seen = pk[(pk["point"] == "gateway-app.pcap") & (pk["src"] == app1)].drop_duplicates("pkt_hash")
    both = sent.merge(seen[["pkt_hash", "ts_ns", "frame_len"]], on="pkt_hash", suffixes=("", "_gw"))
    delay_ms = (both["ts_ns_gw"] - both["ts_ns"]) / 1e6
    inside = both["ts_ns"].between(s + NS, e)
    before = both["ts_ns"].between(s - 5 * NS, s)
    assert np.percentile(delay_ms[inside], 50) > 50 and np.percentile(delay_ms[before], 90) < 5
    # the bucket's rate caps what crosses: 64 kbit/s is 8 kB/s, while the flood's answers alone are ~17 kB/s
    crossed = seen.loc[seen["ts_ns"].between(s + NS, e), "frame_len"].sum()
    offered = sent.loc[sent["ts_ns"].between(s + NS, e), "frame_len"].sum()
    assert crossed < 8_000 * (e - s - NS) / NS * 1.2 + 4_096 < offered


@needs_lab
@pytest.mark.slow
def test_gateway_route_change_and_black_hole(lab_run: tuple) -> None:
    _, pk, labels, _ = lab_run
    app = pk[pk["point"] == "gateway-app.pcap"]
    routed_in = app[in_net(app["dst"], "10.10.2.0/24") & ~in_net(app["src"], "10.10.2.0/24") & (app["ip_version"] == 4)]
    s, e = span(labels, "config_change")
    assert routed_in["ts_ns"].between(s + NS // 5, e - NS // 5).sum() == 0  # nothing routed into the subnet
    assert routed_in["ts_ns"].between(s - 8 * NS, s).sum() > 10 and routed_in["ts_ns"].between(e, e + 3 * NS).sum() > 0
    web1 = ip("10.10.1.10")  # on host0, whose uplinks went down: nothing from it reaches the gateway
    gw = pk[pk["point"].str.startswith("gateway-")]
    s, e = span(labels, "blackhole")
    from_web1, to_web1 = gw[gw["src"] == web1], gw[gw["dst"] == web1]
    assert from_web1["ts_ns"].between(s + NS // 5, e - NS // 5).sum() == 0
    assert from_web1["ts_ns"].between(s - 5 * NS, s).sum() > 10 and from_web1["ts_ns"].between(e, e + 4 * NS).sum()
    assert to_web1["ts_ns"].between(s + NS // 5, e - NS // 5).sum() > 0  # its peers keep trying into the hole


@needs_lab
@pytest.mark.slow
def test_filter_pushed_refuses_the_subnet_with_icmp(lab_run: tuple) -> None:
    _, pk, labels, _ = lab_run
    web = pk[pk["point"] == "gateway-web.pcap"]
    unreachable = web[(web["src"] == ip("10.10.1.1")) & (web["proto"] == 1) & (web["icmp_type"] == 3)]
    prohibited = unreachable[unreachable["icmp_code"] == 13]  # the filter's refusals of the web subnet's packets
    s, e = span(labels, "config_change", nth=1)
    assert len(prohibited) >= 2 and prohibited["ts_ns"].between(s, e + NS // 5).all()
    assert in_net(prohibited["dst"], "10.10.1.0/24").all()
    # while the app subnet's route was withdrawn, the gateway told web VMs reaching for it: net unreachable
    s, e = span(labels, "config_change")
    assert unreachable.loc[unreachable["icmp_code"] == 0, "ts_ns"].between(s, e + NS // 5).all()


@needs_lab
@pytest.mark.slow
def test_everyday_clients_resolve_names_and_log_in_with_ssh(lab_run: tuple) -> None:
    _, pk, _, _ = lab_run
    gw = pk[pk["point"].str.startswith("gateway-")]
    dns = gw[(gw["proto"] == 17) & (gw["dst_port"] == 53)]
    for vm, resolver in (("10.10.1.10", "10.10.1.1"), ("10.10.1.11", "10.10.1.1"), ("10.10.2.10", "10.10.2.1")):
        asked = dns[(dns["src"] == ip(vm)) & (dns["dst"] == ip(resolver))]
        answered = gw[(gw["src"] == ip(resolver)) & (gw["dst"] == ip(vm)) & (gw["src_port"] == 53)]
        # dnsmasq on the gateway answers (web-2's queries relayed by the man in the middle cross the bridge twice)
        assert len(asked) >= 10 and len(answered) >= 0.75 * len(asked), vm
    ssh = gw[(gw["proto"] == 6) & (gw["dst_port"] == 22) & in_net(gw["src"], "10.10.0.0/16")]
    logins = ssh[((ssh["tcp_flags"] & 0x12) == 0x02)]
    assert logins.groupby("src")["dst"].size().min() >= 1 and len(logins) >= 5  # key logins between VMs
    # each VM's idle session to a peer lasts the run: packets at its start and at its end, on one connection
    idle = ssh[(ssh["src"] == ip("10.10.1.10")) & (ssh["dst"] == ip("10.10.1.11"))]
    first = idle.groupby("src_port")["ts_ns"].agg(["min", "max"])
    assert ((first["max"] - first["min"]) > 40 * NS).any()


@needs_lab
@pytest.mark.slow
def test_iodine_tunnels_through_the_gateways_resolver_in_its_span(lab_run: tuple) -> None:
    _, pk, labels, _ = lab_run
    s, e = span(labels, "dns_tunnel", 1.0)
    web = pk[(pk["point"] == "gateway-web.pcap") & (pk["proto"] == 17)]
    queries = web[(web["src"] == ip("10.10.1.10")) & (web["dst"] == ip("10.10.1.1")) & (web["dst_port"] == 53)]
    inet = pk[(pk["point"] == "internet.pcap") & (pk["proto"] == 17) & (pk["dst_port"] == 53)]
    relayed = inet[(inet["src"] == ip("198.18.0.1")) & (inet["dst"] == ip("198.18.0.12"))]
    assert len(relayed) >= 50 and relayed["ts_ns"].between(s, e).all()  # only the tunnel's domain is forwarded
    tunnel = queries[queries["ts_ns"].between(s, e)]
    assert len(tunnel) >= 50 and tunnel["payload_len"].median() > 2 * queries.loc[
        ~queries["ts_ns"].between(s, e), "payload_len"].median()  # long names carry the data  # fmt: skip


@needs_lab
@pytest.mark.slow
def test_hydra_guesses_at_ftp_and_http_auth_in_their_spans(lab_run: tuple) -> None:
    _, pk, labels, _ = lab_run
    inet = pk[(pk["point"] == "internet.pcap") & (pk["proto"] == 6)]
    syn = inet[((inet["tcp_flags"] & 0x12) == 0x02) & in_net(inet["src"], "198.18.0.0/24")]
    guesses = [("198.18.0.12", "10.10.2.10", 21), ("198.18.0.11", "10.10.1.10", 80)]  # in start order
    for nth, (guesser, victim, port) in enumerate(guesses):
        s, e = span(labels, "bruteforce", 0.5, nth=nth)
        tries = syn[(syn["src"] == ip(guesser)) & (syn["dst"] == ip(victim)) & (syn["dst_port"] == port)]
        assert tries["ts_ns"].between(s, e).sum() >= 4 and not (~tries["ts_ns"].between(s, e)).any(), port
        answers = inet[(inet["src"] == ip(victim)) & (inet["src_port"] == port) & (inet["payload_len"] > 0)]
        assert answers["ts_ns"].between(s, e).sum() >= 4, port  # vsftpd's "530", the server's 401s


@needs_lab
@pytest.mark.slow
def test_arpspoof_claims_the_gateway_at_its_victim_and_is_named(lab_run: tuple) -> None:
    d, _, labels, arp = lab_run
    s, e = span(labels, "arp_spoofing", 0.5)
    at_victim = arp[(arp["capture_point"].astype(str) == "vm-web-2.pcap") & (arp["op"] == 2)]
    claimed_gw = at_victim[v4(at_victim["sender_ip"]) == ip("10.10.1.1")]
    web1_mac = int("02000a0a010a", 16)
    forged = claimed_gw[claimed_gw["sender_mac"].astype(np.uint64) == web1_mac]
    assert len(forged) >= 3 and forged["ts_ns"].between(s, e).all()
    tmap = load_tenant_map(d / "out" / "tenants.yaml")
    spoofs = [f for f in arp_findings(read_arp(str(d / "ws")), tmap.ports_by_mac()) if f.type == "arp_spoofing"]
    assert [(f.scope, f.ip, f.evidence["address"]) for f in spoofs] == [("acme/web-1", "10.10.1.10", "10.10.1.1")]


@needs_lab
@pytest.mark.slow
def test_nothing_left_behind(lab_run: tuple) -> None:
    d, *_ = lab_run
    assert existing_namespaces() == []
    left = subprocess.run(["pgrep", "-f", str(d / "out")], capture_output=True, text=True).stdout.split()
    assert left == []
    assert not (Path.cwd() / "hydra.restore").exists()  # the tools ran in the run's scratch directory


@needs_lab
@pytest.mark.slow
def test_sigterm_tears_down_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(SCENARIO)
    out = tmp_path / "out"
    netsentry = str(Path(sys.executable).parent / "netsentry")
    cmd = [netsentry, "lab", "--scenario", str(tmp_path / "lab.yaml"), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while len(existing_namespaces()) < 8 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)  # servers, clients and captures running
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert existing_namespaces() == []
    assert not out.exists() and not any(tmp_path.glob(".out.tmp-*"))


def test_scenario_errors_name_the_field(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    for text, match in [
        (SCENARIO.replace("type: blackhole", "type: meteor"), r"bad\.yaml.*events\[5\]\.type.*meteor"),
        (SCENARIO.replace("target: host0", "target: host9"), r"events\[5\]\.target.*a host \(host0, host1\).*host9"),
        (SCENARIO.replace("target: app,", "target: host1,"), r"events\[4\]\.target.*config_change acts on a subnet"),
        (
            SCENARIO.replace("target: app-1, start_s: 4, duration_s: 6", "target: host1, start_s: 4, duration_s: 6"),
            r"events\[1\]\.target.*ping_sweep acts on a VM",
        ),
        (SCENARIO.replace("cidr: 10.10.2.0/24", "cidr: 10.99.2.0/24"), r"subnets\[1\]\.cidr.*must lie in"),
        (SCENARIO.replace("duration_s: 62", "duration_s: 20"), r"duration_s.*hold every event"),
        (SCENARIO.replace("service: ftp", "service: smtp"), r"events\[10\]\.params\.service: one of ssh, ftp"),
        (SCENARIO.replace("answer: icmp", "answer: shrug"), r"events\[8\]\.params\.answer: one of silent, icmp.*shrug"),
        (SCENARIO.replace('"vm:web-2"', '"vm:nobody"'), r"capture.*vm:nobody"),
    ]:
        p.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_lab_scenario(p)
    sc = load_lab_scenario(Path(__file__).parents[2] / "configs" / "lab" / "demo.yaml")
    assert sc.scaled(0.5).duration_s == sc.duration_s / 2
    assert sc.tools() == ("hping3", "hydra", "nmap")  # sshd, dnsmasq and ssh are every lab's (BASE_TOOLS)
    sc = load_lab_scenario(Path(__file__).parents[2] / "configs" / "lab" / "tools.yaml")
    assert sc.tools() == ("arpspoof", "bridge", "hydra", "ifconfig", "iodine", "iodined", "vsftpd")


def test_clear_errors_when_not_root_or_a_tool_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        require_root()
    monkeypatch.setattr(shutil, "which", lambda name: None if name in ("nmap", "hping3") else "/usr/bin/" + name)
    with pytest.raises(ToolMissingError, match=r"hping3, nmap: install with 'apt-get install hping3 nmap'"):
        require_tools(["ip", "nmap", "hping3"])


@needs_lab
def test_lock_and_leftovers_of_a_dead_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from netsentry.pipeline.core.errors import LockHeldError
    from netsentry.pipeline.lab import topology

    monkeypatch.setattr(topology, "STATE_DIR", tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    subprocess.run(["ip", "netns", "add", "nsl-dead-gw"], check=True)
    subprocess.run(["ip", "netns", "add", "nsl-live-gw"], check=True)
    try:
        (tmp_path / "dead.json").write_text(f'{{"pid": {dead.pid}, "run_id": "dead"}}')
        (tmp_path / "live.json").write_text(f'{{"pid": {os.getppid()}, "run_id": "live"}}')  # a live process
        lock = topology.LabLock()
        try:
            with pytest.raises(LockHeldError, match="another netsentry lab"):
                topology.LabLock()
            assert topology.clean_leftovers() == ["nsl-dead-gw"]  # only what a dead run can be proven to own
            left = existing_namespaces()
            assert "nsl-live-gw" in left and "nsl-dead-gw" not in left and not (tmp_path / "dead.json").exists()
        finally:
            lock.release()
    finally:
        topology.teardown(existing_namespaces("dead") + existing_namespaces("live"))
