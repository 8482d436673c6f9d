"""Compromise behaviours: known answers at the connection-table level, then in the written pcaps."""

from __future__ import annotations

import csv
import ipaddress
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import yaml

from netsentry.pipeline.capture.reader import read_packets
from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.core.schemas import ip16_numpy
from netsentry.pipeline.simulate import conns as C
from netsentry.pipeline.simulate.attacks.intrusion import ADMIN_PORTS
from netsentry.pipeline.simulate.cloud import build_cloud
from netsentry.pipeline.simulate.dns_payloads import APP_DNS_DNSCAT2, APP_DNS_DNSTT, APP_DNS_IODINE
from netsentry.pipeline.simulate.events import COMPROMISES, Label, S, SimContext
from netsentry.pipeline.simulate.scenario import Scenario
from netsentry.pipeline.simulate.stage import simulate_to_dir

BEHAVIOURS = ["port_scan_vertical", "port_scan_horizontal", "ssh_bruteforce", "c2_beacon", "exfiltration", "ddos_syn",
              "ddos_udp", "dns_tunnel", "lateral_movement", "crypto_mining"]  # fmt: skip
# every behaviour at default parameters, but floods and uploads cut down so the tests stay quick
SMALL: dict[str, dict[str, Any]] = {"ddos_syn": {"max_packets": 5000}, "ddos_udp": {"max_packets": 5000},
                                    "exfiltration": {"total_mb": 5}}  # fmt: skip

CLOUD: dict[str, Any] = {
    "hosts": 2,
    "external_hosts": 20,
    "tenants": [
        {"name": "acme", "vpcs": [{"id": "vpc-a", "cidr": "10.0.0.0/16", "subnets": [
            {"name": "front", "cidr": "10.0.1.0/24", "vms": [{"role": "web", "count": 2}, {"role": "app"}]},
            {"name": "back", "cidr": "10.0.2.0/24", "vms": [{"role": "db"}, {"role": "dns"}, {"role": "admin"}]},
        ]}]},
        {"name": "solo", "vpcs": [{"id": "vpc-b", "cidr": "10.1.0.0/24", "subnets": [
            {"name": "only", "cidr": "10.1.0.0/24", "vms": [{"role": "batch"}]},
        ]}]},
    ],
}  # fmt: skip
T0_S, T1_S = 10.0, 70.0  # the event's window inside a 120 s scenario


def make_ctx(seed: int = 7, overlay: str = "none") -> SimContext:
    sc = Scenario.model_validate({"name": "t", "duration_s": 120, "seed": seed, "overlay": overlay, "cloud": CLOUD})
    rng = np.random.default_rng(seed)
    cloud = build_cloud(sc, rng)
    return SimContext(sc, cloud, rng, sc.start_ns, sc.start_ns + 120 * S)


def run(name: str, params: dict[str, Any] | None = None, *, vm: str = "acme-web-1", seed: int = 7,
        overlay: str = "none") -> tuple[SimContext, int, C.ConnTable, Label, int, int]:  # fmt: skip
    ctx = make_ctx(seed, overlay)
    i = ctx.cloud.index(vm)
    s, e = ctx.t0 + int(T0_S * S), ctx.t0 + int(T1_S * S)
    conns, labels = COMPROMISES[name](ctx, i, s, e, dict(SMALL.get(name, {}), **(params or {})))
    assert len(labels) == 1
    return ctx, i, conns, labels[0], s, e


def ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


# --------------------------------------------------------------------------- common contract


def test_all_registered() -> None:
    assert set(BEHAVIOURS) <= set(COMPROMISES)


@pytest.mark.parametrize("name", BEHAVIOURS)
def test_contract(name: str) -> None:
    ctx, vm, conns, lab, s, e = run(name)
    assert len(conns) > 0
    t = conns["start_ns"]
    assert t.min() >= s and t.max() < e
    # the VM is one end of every connection, and the vni column is its VPC's
    involved = (conns["client_vm"] == vm) | (conns["server_vm"] == vm)
    if name == "dns_tunnel":  # plus the resolver's forwarded queries
        involved |= conns["client_vm"] == ctx.cloud.index("acme-dns-1")
    assert involved.all()
    assert (conns["vni"] == ctx.cloud.vni[vm]).all()
    assert lab.kind == "compromise" and lab.scenario == name and lab.scope_type == "vm"
    assert lab.scope == str(ipaddress.IPv4Address(int(ctx.cloud.ip[vm])))
    assert (lab.tenant, lab.vm, lab.vni) == ("acme", "acme-web-1", 0)
    assert lab.start_ns == (t.min() if name == "c2_beacon" else s)  # an implant is seen from its first call
    assert lab.start_ns < lab.end_ns <= e
    assert t.max() <= lab.end_ns


@pytest.mark.parametrize("name", BEHAVIOURS)
def test_deterministic_per_seed(name: str) -> None:
    a, b, other = run(name, seed=3)[2], run(name, seed=3)[2], run(name, seed=4)[2]
    for k in C.COLUMNS:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert len(a) != len(other) or any(not np.array_equal(a[k], other[k]) for k in ("start_ns", "cport", "server"))


@pytest.mark.parametrize("name", BEHAVIOURS)
def test_overlay_vni(name: str) -> None:
    ctx, vm, conns, lab, _, _ = run(name, overlay="vxlan")
    assert ctx.cloud.vni[vm] > 0 and lab.vni == ctx.cloud.vni[vm]
    assert (conns["vni"] == ctx.cloud.vni[vm]).all()


def test_bad_params() -> None:
    with pytest.raises(ConfigError, match="rate_pps"):
        run("port_scan_vertical", {"rate_pps": 0})
    with pytest.raises(ConfigError, match="role"):
        run("ssh_bruteforce", {"role": "bystander"})
    with pytest.raises(ConfigError, match="target"):
        run("port_scan_vertical", {"target": "no-such-vm"})
    with pytest.raises(ConfigError, match="VPC"):
        run("port_scan_vertical", {"target": "solo-batch-1"})
    with pytest.raises(ConfigError, match="no other VM"):
        run("lateral_movement", vm="solo-batch-1")
    with pytest.raises(ConfigError, match="external"):
        run("port_scan_vertical", {"external": "maybe"})
    with pytest.raises(ConfigError, match=r"unknown event parameter.*period"):
        run("c2_beacon", {"period": 10})


# --------------------------------------------------------------------------- each behaviour


def test_port_scan_vertical_vm_target() -> None:
    ctx, _, c, lab, s, _ = run("port_scan_vertical", {"target": "acme-db-1"})
    db = ctx.cloud.index("acme-db-1")
    assert len(c) == 1000 and len(np.unique(c["sport"])) == 1000 and c["sport"].max() <= 1024
    assert (c["server"] == ctx.cloud.ip[db]).all() and (c["server_vm"] == db).all()
    assert len(np.unique(c["cport"])) == 1  # nmap -sS: one source port
    out = np.bincount(c["outcome"], minlength=7)
    assert set(c["sport"][c["outcome"] == C.OUTCOME_OPEN_RST].tolist()) == {22, 873}
    assert out[C.OUTCOME_REJECT] > 900 and 20 < out[C.OUTCOME_NO_ANSWER] < 100
    assert (c["syn_retries"][c["outcome"] == C.OUTCOME_NO_ANSWER] == 1).all()
    assert (c["syn_retries"][c["outcome"] != C.OUTCOME_NO_ANSWER] == 0).all()
    # 100 probes/s: 1000 ports in ~10 s, and the label ends with the scan
    span = (c["start_ns"].max() - s) / S
    assert 9.9 < span < 10.0 and lab.end_ns - s < 12 * S
    assert (np.diff(np.sort(c["start_ns"])) > 0).all()


def test_port_scan_vertical_external_and_params() -> None:
    ctx, _, c, _, _, _ = run("port_scan_vertical", {"external": True, "ports": 5000, "rate_pps": 500, "retries": 0})
    assert (c["server_vm"] == -1).all() and np.isin(c["server"], ctx.cloud.external).all()
    assert len(np.unique(c["sport"])) == 5000 and c["sport"].max() > 1024
    out = np.bincount(c["outcome"], minlength=7)
    assert out[C.OUTCOME_NO_ANSWER] > 0.9 * 5000  # most internet ports are filtered (cf. scanme: 17 of 1000 replied)
    assert (c["syn_retries"] == 0).all()
    # default target with no other VM in the VPC: an internet host
    ctx, _, c, _, _, _ = run("port_scan_vertical", {"ports": 50}, vm="solo-batch-1")
    assert (c["server_vm"] == -1).all() and len(c) == 50
    # a short window truncates the scan
    assert len(run("port_scan_vertical", {"rate_pps": 10})[2]) == 600


def test_port_scan_horizontal() -> None:
    ctx, vm, c, lab, s, _ = run("port_scan_horizontal", {"port": 22})
    cl = ctx.cloud
    assert len(c) == 254 and (c["sport"] == 22).all()
    assert len(np.unique(c["server"])) == 254 and cl.ip[vm] not in c["server"]
    assert c["server"].min() == ip("10.0.1.1") and c["server"].max() == ip("10.0.2.1")  # its /24 then the next
    peers = [j for j in cl.same_vpc(vm) if cl.ip[j] < ip("10.0.2.2")]  # VMs inside the swept range
    hit = c["server_vm"] != vm
    assert sorted(c["server_vm"][hit].tolist()) == sorted(peers)
    assert (c["outcome"][hit] == C.OUTCOME_OPEN_RST).all()  # every VM runs sshd
    assert (c["outcome"][~hit] == C.OUTCOME_NO_ANSWER).all()
    assert 12 < (lab.end_ns - s) / S < 13.5  # 254 probes at 20/s
    c445 = run("port_scan_horizontal", {"port": 445, "hosts": 600, "rate_pps": 100})[2]
    assert len(c445) == 600 and not (c445["outcome"] == C.OUTCOME_OPEN_RST).any()
    assert (c445["outcome"] == C.OUTCOME_REJECT).sum() == 5  # every other VM of the VPC, none serving SMB
    assert c445["server"].max() == ip("10.0.3.93")  # .1–.254 of three /24s, minus the scanner's own address
    ext = run("port_scan_horizontal", {"external": True, "rate_pps": 100})[2]
    assert (ext["server_vm"] == -1).all() and (np.bincount(ext["outcome"])[C.OUTCOME_NO_ANSWER] > 200)
    assert len(np.unique(ext["server"] >> 8)) == 1


def test_ssh_bruteforce_attacker_and_victim() -> None:
    ctx, vm, c, _, _, _ = run("ssh_bruteforce")
    assert 100 < len(c) < 140  # Poisson at 2/s over 60 s
    assert (c["sport"] == 22).all() and (c["app"] == C.APP_SSH).all() and (c["client_vm"] == vm).all()
    assert len(np.unique(c["server"])) == 1 and (c["server_vm"] == -1).all() and (c["rounds"] == 5).all()
    assert np.isin(c["outcome"], (C.OUTCOME_FIN, C.OUTCOME_RST_SERVER)).all()
    assert 0.15 < (c["outcome"] == C.OUTCOME_RST_SERVER).mean() < 0.45
    ctx, vm, c, lab, _, _ = run("ssh_bruteforce", {"role": "victim", "connections": 11, "sources": 3})
    assert len(c) == 11 and (c["server_vm"] == vm).all() and (c["client_vm"] == -1).all()
    assert (c["server"] == ctx.cloud.ip[vm]).all() and np.isin(c["client"], ctx.cloud.external).all()
    assert len(np.unique(c["client"])) <= 3 and "role=victim" in lab.detail
    c = run("ssh_bruteforce", {"target": "acme-db-1", "attempts": 6})[2]
    assert (c["server_vm"] == 3).all() and (c["rounds"] == 8).all()


def test_c2_beacon_period_and_jitter() -> None:
    ctx, _, c, _, _, _ = run("c2_beacon", {"period_s": 5, "jitter": 0.2})
    t = c["start_ns"]
    gaps = np.diff(t) / S
    assert 10 <= len(c) <= 13 and (gaps >= 4.0 - 1e-9).all() and (gaps <= 6.0 + 1e-9).all()
    assert abs(gaps.mean() - 5) < 0.5 and gaps.std() > 0.1
    assert (c["sport"] == 443).all() and (c["app"] == C.APP_TLS).all() and len(np.unique(c["server"])) == 1
    assert np.isin(c["server"], ctx.cloud.external).all() and (c["req_bytes"] <= 600).all()
    c = run("c2_beacon", {"jitter": 0})[2]
    assert len(c) == 2 and np.diff(c["start_ns"])[0] == 30 * S
    c = run("c2_beacon", {"period_s": 1, "task_fraction": 1.0, "target": "198.51.100.7", "port": 8443})[2]
    assert (c["resp_bytes"] >= 2000).all() and (c["server"] == ip("198.51.100.7")).all() and (c["sport"] == 8443).all()


def test_exfiltration() -> None:
    _, _, c, lab, s, e = run("exfiltration", {"port": 443, "total_mb": 50})
    # the label ends when the last upload can have finished (64 KiB per round trip), before the window's end
    need = c["start_ns"] + c["rtt_ns"] * (c["req_bytes"] * c["rounds"]) / 65535
    assert need.max() <= lab.end_ns < e and lab.start_ns == s
    assert len(c) == 4 and len(np.unique(c["server"])) == 1 and (c["server_vm"] == -1).all()
    sent = c["req_bytes"] * c["rounds"]
    assert abs(sent.sum() - 50e6) < 4 * 16e6 and (c["resp_bytes"] < 1000).all()
    assert (c["sport"] == 443).all() and (c["app"] == C.APP_TLS).all()
    assert (c["start_ns"] < s + (e - s) / 2).all() and len(np.unique(c["start_ns"])) == 4
    # uploads are trimmed to what fits the window at 64 KiB per round trip
    c = run("exfiltration", {"total_mb": 10_000, "connections": 2, "port": 22})[2]
    fits = 65535 * (e - c["start_ns"]) / c["rtt_ns"]
    assert ((c["req_bytes"] * c["rounds"]) <= fits).all() and (c["app"] == C.APP_SSH).all()


def test_ddos_syn() -> None:
    c = run("ddos_syn", {"max_packets": 1_000_000})[2]
    assert len(c) == 120_000  # 2000/s over 60 s
    assert (c["outcome"] == C.OUTCOME_NO_ANSWER).all() and (c["syn_retries"] == 0).all()
    assert len(np.unique(c["server"])) == 1 and np.isin(c["sport"], (80, 443)).all() and len(np.unique(c["sport"])) == 1
    assert len(np.unique(c["cport"])) > 50_000
    c = run("ddos_syn", {"rate": 1000, "port": 80})[2]
    assert len(c) == 5000 and (c["sport"] == 80).all()
    lab = run("ddos_syn", {"rate": 1000})[3]
    assert 4.9 * S < lab.end_ns - lab.start_ns < 5.1 * S  # capped: the flood stops early


def test_ddos_syn_victim() -> None:
    ctx, vm, c, lab, _, _ = run("ddos_syn", {"role": "victim", "rate": 1000, "port": 25565})
    assert len(c) == 5000 and (c["outcome"] == C.OUTCOME_NO_ANSWER).all()
    assert (c["server"] == ctx.cloud.ip[vm]).all() and (c["sport"] == 25565).all() and (c["server_vm"] == vm).all()
    assert len(np.unique(c["client"])) > 4900 and (c["client_vm"] == -1).all()  # spoofed: ~one SYN per source
    assert "role=victim" in lab.detail


def test_ddos_syn_victim_of_real_sources() -> None:
    """hping3 -S without spoofing: a few real hosts; the victim's open port answers and each source's kernel resets."""
    ctx, vm, c, lab, _, _ = run("ddos_syn", {"role": "victim", "rate": 1000, "port": 80, "sources": 2})
    assert len(c) == 5000 and (c["outcome"] == C.OUTCOME_OPEN_RST).all() and (c["server_vm"] == vm).all()
    assert len(np.unique(c["client"])) == 2 and np.isin(c["client"], ctx.cloud.external).all()
    assert "sources=2" in lab.detail
    with pytest.raises(ConfigError, match="sources applies to role=victim only"):
        run("ddos_syn", {"sources": 3})
    with pytest.raises(ConfigError, match="expected spoofed or a number"):
        run("ddos_syn", {"role": "victim", "sources": 0})


def test_ddos_udp() -> None:
    c = run("ddos_udp")[2]
    assert len(c) == 5000 and (c["proto"] == 17).all() and (c["resp_bytes"] == 0).all()
    assert (c["rounds"] == 1).all() and (c["req_bytes"] == 512).all() and len(np.unique(c["sport"])) > 1000
    c = run("ddos_udp", {"port": 53, "payload": 100})[2]
    assert (c["sport"] == 53).all() and (c["app"] == C.APP_DNS).all() and (c["req_bytes"] == 100).all()


def test_dns_tunnel_via_vpc_resolver() -> None:
    ctx, vm, c, lab, _, _ = run("dns_tunnel", {"tool": "iodine", "qtype": "NULL", "rate": 20})
    dns = ctx.cloud.index("acme-dns-1")
    q = c.select(c["client_vm"] == vm)
    fwd = c.select(c["client_vm"] == dns)
    assert len(q) > 150 and len(fwd) == len(q)  # bursts at 20/s between polls; every new name recursed
    assert len(np.unique(q["cport"])) == 1 and len(np.unique(fwd["cport"])) > len(q) // 2  # one socket; a resolver's
    assert (q["server_vm"] == dns).all() and (q["sport"] == 53).all() and (q["proto"] == 17).all()
    assert (q["app"] == APP_DNS_IODINE).all() and (fwd["app"] == APP_DNS_IODINE).all()
    assert q["req_bytes"].min() >= 60 + 29 and q["req_bytes"].max() <= 250 + 29  # names of 60–250 characters
    assert (fwd["server_vm"] == -1).all() and np.isin(fwd["server"], ctx.cloud.external[:2]).all()
    assert (q["server_ns"] > fwd["rtt_ns"]).all()  # the answer waits for the upstream round trip
    assert "tool=iodine" in lab.detail
    c = run("dns_tunnel", {"tool": "dnstt", "forward": False, "rate": 5, "sockets": 3})[2]
    assert (c["client_vm"] == vm).all() and len(np.unique(c["cport"])) == 3 and (c["app"] == APP_DNS_DNSTT).all()
    c = run("dns_tunnel", {"tool": "iodine"}, vm="solo-batch-1")[2]
    assert (c["server_vm"] == -1).all() and np.isin(c["server"], ctx.cloud.external[:2]).all()
    c = run("dns_tunnel", {"tool": "dnscat2"})[2]  # straight to its server
    assert len(np.unique(c["server"])) == 1 and (c["server_vm"] == -1).all() and (c["app"] == APP_DNS_DNSCAT2).all()
    assert not np.isin(c["server"], ctx.cloud.external[:2]).any()
    ctx, vm, c, lab, _, _ = run("dns_tunnel", {"server": "vm"})
    assert (c["server_vm"] == vm).all() and (c["client_vm"] == -1).all() and lab.scope_type == "vm"
    with pytest.raises(ConfigError, match="tool"):
        run("dns_tunnel", {"tool": "dns2tcp"})
    with pytest.raises(ConfigError, match="qtype"):
        run("dns_tunnel", {"tool": "iodine", "qtype": "A"})


def test_lateral_movement() -> None:
    ctx, vm, c, lab, _, _ = run("lateral_movement", {"filtered": 0.0})
    peers = ctx.cloud.same_vpc(vm)
    assert len(c) == 4 * len(peers) and set(c["server_vm"].tolist()) == set(peers.tolist())
    assert set(c["sport"].tolist()) == set(ADMIN_PORTS) and (c["client_vm"] == vm).all()
    ok = c["outcome"] == C.OUTCOME_FIN
    assert (c["sport"][ok] == 22).all() and ok.sum() == len(peers) and (c["rounds"][ok] >= 4).all()
    assert (c["outcome"][~ok] == C.OUTCOME_REJECT).all()  # nobody serves 445/3389/5985
    c = run("lateral_movement", {"filtered": 1.0})[2]
    assert (c["outcome"] == C.OUTCOME_NO_ANSWER).all() and (c["syn_retries"] == 1).all()
    c = run("lateral_movement", {"filtered": 0.0, "sessions": 0.0, "ports": [22], "targets": 2})[2]
    assert len(c) == 2 and (c["outcome"] == C.OUTCOME_RST_SERVER).all() and (c["rounds"] == 3).all()
    _, _, c, lab, s, _ = run("lateral_movement", {"rate": 100})
    assert lab.end_ns - s < 20 * S  # 20 attempts at 100/s, sessions of a few seconds: the label ends with them


def test_crypto_mining() -> None:
    _, _, c, _, _, e = run("crypto_mining")
    assert len(c) == 1 and c["outcome"][0] == C.OUTCOME_OPEN and c["app"][0] == C.APP_STRATUM
    assert c["sport"][0] in (3333, 4444) and 10 * S <= c["think_ns"][0] <= 30 * S
    step = c["think_ns"] + c["rtt_ns"] + c["server_ns"]
    last = c["start_ns"] + (c["rounds"] - 1) * step
    assert (last < e).all() and (last + step >= e - c["rtt_ns"]).all()  # rounds fill the window
    c = run("crypto_mining", {"connections": 3, "share_s": [2, 3], "port": 14444})[2]
    assert len(c) == 3 and (c["rounds"] >= 19).all() and (c["sport"] == 14444).all()


# --------------------------------------------------------------------------- in the written pcaps

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
SYN, RST, ACK = 0x02, 0x04, 0x10
VICTIM = "acme-web-1"


def simulate_event(tmp: Path, name: str, params: dict[str, Any] | None = None, **over: Any) -> tuple[Path, Any]:
    """One scenario with only this event (no benign traffic) written to ``tmp/name``."""
    sc = {"name": name, "duration_s": 40, "seed": 11, "benign_rate": 0, "capture_points": ["vm", "host", "gateway"],
          "cloud": CLOUD, "events": [{"kind": "compromise", "type": name, "target": VICTIM, "start_s": 5,
                                      "duration_s": 30, "params": params or {}}]}  # fmt: skip
    sc.update(over)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sc))
    res = simulate_to_dir(path, tmp / name)
    return tmp / name, res


def packets(path: Path) -> dict[str, np.ndarray]:
    """The pcap's packets as numpy columns, IPv4 addresses as uint32."""
    t = pa.concat_tables(list(read_packets(path)), promote_options="default") if path.stat().st_size > 24 else None
    if t is None or t.num_rows == 0:
        return {k: np.zeros(0, np.int64) for k in ("ts_ns", "src", "dst", "proto", "sport", "dport", "flags", "plen")}
    ip4 = {k: ip16_numpy(t[f"{k}_ip"])[:, 12:].copy().view(">u4").ravel().astype(np.int64) for k in ("src", "dst")}
    return {"ts_ns": t["ts_ns"].to_numpy(), "src": ip4["src"], "dst": ip4["dst"], "proto": t["proto"].to_numpy(),
            "sport": t["src_port"].to_numpy(), "dport": t["dst_port"].to_numpy(), "flags": t["tcp_flags"].to_numpy(),
            "plen": t["payload_len"].to_numpy()}  # fmt: skip


def syns(p: dict[str, np.ndarray]) -> np.ndarray:
    return (p["proto"] == 6) & (p["flags"] & (SYN | ACK) == SYN)


def tshark_problems(path: Path) -> int:
    bad = "_ws.malformed || _ws.expert.severity >= 8388608 || _ws.expert.group == 0x07000000"
    out = subprocess.run(["tshark", "-r", str(path), "-Y", bad], capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


def vm_ip(res: Any, name: str = VICTIM) -> int:
    return int(res.cloud.ip[res.cloud.index(name)])


def test_packets_vertical_scan(tmp_path: Path) -> None:
    out, res = simulate_event(tmp_path, "port_scan_vertical", {"target": "acme-db-1"})
    p = packets(out / "vm.pcap")
    me, db = vm_ip(res), vm_ip(res, "acme-db-1")
    probe = syns(p) & (p["src"] == me) & (p["dst"] == db)
    assert len(np.unique(p["dport"][probe])) == 1000
    synack = (p["src"] == db) & (p["flags"] & (SYN | ACK) == SYN | ACK)
    assert set(p["sport"][synack].tolist()) == {22, 873}
    rst_ack = (p["src"] == db) & (p["flags"] & (RST | ACK) == RST | ACK)
    assert 900 < rst_ack.sum() < 1000
    assert len(packets(out / "gateway.pcap")["ts_ns"]) == 0  # inside the VPC: never at the gateway
    lab = csv.DictReader((out / "labels.csv").open()).__next__()
    assert lab["scenario"] == "port_scan_vertical" and lab["scope"] == str(ipaddress.IPv4Address(me))
    assert int(lab["start_ns"]) <= p["ts_ns"][probe].min() and p["ts_ns"][probe].max() <= int(lab["end_ns"])


def test_packets_horizontal_scan(tmp_path: Path) -> None:
    out, res = simulate_event(tmp_path, "port_scan_horizontal", {"port": 22, "rate_pps": 50})
    p = packets(out / "vm.pcap")
    probe = syns(p) & (p["src"] == vm_ip(res)) & (p["dport"] == 22)
    assert len(np.unique(p["dst"][probe])) == 254
    answered = p["flags"] & (SYN | ACK) == SYN | ACK
    assert len(np.unique(p["src"][answered])) == 2  # the other VMs of 10.0.1.0/24 (sshd: SYN-ACK)
    assert len(packets(out / "gateway.pcap")["ts_ns"]) == 0
    host = packets(out / "host.pcap")  # unanswered probes die in the local virtual switch
    assert len(np.unique(host["dst"][syns(host)])) <= 2


def test_packets_ssh_bruteforce_victim(tmp_path: Path) -> None:
    out, res = simulate_event(tmp_path, "ssh_bruteforce", {"role": "victim", "connections": 11})
    for point in ("vm", "gateway"):
        p = packets(out / f"{point}.pcap")
        conn = syns(p) & (p["dst"] == vm_ip(res)) & (p["dport"] == 22)
        assert conn.sum() == 11 and len(np.unique(p["sport"][conn])) == 11
        assert len(np.unique(p["src"][conn])) == 1 and p["src"][conn][0] in res.cloud.external
        assert (p["plen"][(p["src"] == vm_ip(res)) & (p["plen"] > 0)] > 0).sum() >= 11 * 5


def test_packets_c2_beacon_period(tmp_path: Path) -> None:
    out, res = simulate_event(tmp_path, "c2_beacon", {"period_s": 3, "jitter": 0.1})
    p = packets(out / "gateway.pcap")
    t = p["ts_ns"][syns(p) & (p["src"] == vm_ip(res)) & (p["dport"] == 443)]
    gaps = np.diff(t) / S
    assert 8 <= len(t) <= 11 and (abs(gaps - 3) <= 0.3 + 1e-3).all() and abs(np.median(gaps) - 3) < 0.2


def test_packets_exfiltration_volume(tmp_path: Path) -> None:
    out, res = simulate_event(tmp_path, "exfiltration", {"total_mb": 20, "port": 443})
    p = packets(out / "gateway.pcap")
    up = (p["src"] == vm_ip(res)) & (p["dport"] == 443)
    down = (p["dst"] == vm_ip(res)) & (p["sport"] == 443)
    assert p["plen"][up].sum() >= 19_000_000 and p["plen"][down].sum() < 0.01 * p["plen"][up].sum()
    assert len(np.unique(p["dst"][up])) == 1 and len(np.unique(p["sport"][up])) == 4


def test_packets_ddos_syn(tmp_path: Path) -> None:
    out, res = simulate_event(tmp_path, "ddos_syn", {"rate": 1000, "max_packets": 3000, "port": 80}, overlay="vxlan")
    for point in ("vm", "host", "gateway"):
        p = packets(out / f"{point}.pcap")
        flood = syns(p) & (p["src"] == vm_ip(res)) & (p["dport"] == 80)
        assert flood.sum() == 3000 and len(np.unique(p["dst"][flood])) == 1 and len(p["ts_ns"]) == 3000
        assert 2.9 < (p["ts_ns"][flood].max() - p["ts_ns"][flood].min()) / S < 3.0


@needs_tshark
def test_packets_ddos_udp_parse_cleanly(tmp_path: Path) -> None:
    out, res = simulate_event(tmp_path, "ddos_udp", {"rate": 2000, "max_packets": 4000})
    p = packets(out / "gateway.pcap")
    flood = (p["proto"] == 17) & (p["src"] == vm_ip(res))
    assert flood.sum() == 4000 and (p["plen"][flood] == 512).all() and len(np.unique(p["dport"][flood])) > 3000
    assert tshark_problems(out / "gateway.pcap") == 0


def test_packets_dns_tunnel(tmp_path: Path) -> None:
    out, res = simulate_event(tmp_path, "dns_tunnel", {"tool": "dnstt", "rate": 10})
    p = packets(out / "vm.pcap")
    dns_ip = vm_ip(res, "acme-dns-1")
    q = (p["proto"] == 17) & (p["src"] == vm_ip(res)) & (p["dst"] == dns_ip) & (p["dport"] == 53)
    assert q.sum() > 20 and p["plen"][q].min() >= 60 + 29 and len(np.unique(p["sport"][q])) == 1  # one socket
    a = (p["src"] == dns_ip) & (p["dst"] == vm_ip(res)) & (p["sport"] == 53)
    assert a.sum() == q.sum() and p["plen"][a].min() >= 117
    g = packets(out / "gateway.pcap")  # the resolver recursing for every new name
    assert ((g["src"] == dns_ip) & (g["dport"] == 53)).sum() == q.sum()


def test_packets_lateral_movement(tmp_path: Path) -> None:
    out, res = simulate_event(tmp_path, "lateral_movement", {"filtered": 0.0})
    p = packets(out / "vm.pcap")
    tries = syns(p) & (p["src"] == vm_ip(res))
    assert tries.sum() == 20 and set(p["dport"][tries].tolist()) == set(ADMIN_PORTS)
    assert len(np.unique(p["dst"][tries])) == 5
    assert (p["flags"] & (RST | ACK) == RST | ACK).sum() >= 15  # 445/3389/5985 refused
    assert ((p["sport"] == 22) & (p["flags"] & (SYN | ACK) == SYN | ACK)).sum() == 5


def test_packets_crypto_mining(tmp_path: Path) -> None:
    out, res = simulate_event(tmp_path, "crypto_mining", {"share_s": [2, 3], "port": 3333})
    p = packets(out / "gateway.pcap")
    up = (p["src"] == vm_ip(res)) & (p["dport"] == 3333)
    assert syns(p)[up].sum() == 1 and 9 <= (p["plen"][up] > 0).sum() <= 16  # a share every 2–3 s for 30 s
    assert not (p["flags"] & 0x01).any()  # still open: no FIN


@needs_tshark
@pytest.mark.parametrize("name", BEHAVIOURS)
def test_pcaps_parse_cleanly(tmp_path: Path, name: str) -> None:
    out, _ = simulate_event(tmp_path, name, SMALL.get(name, {}), overlay="vxlan")
    for point in ("vm", "host", "gateway"):
        assert tshark_problems(out / f"{point}.pcap") == 0, point


def test_packets_same_seed_same_bytes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = simulate_event(tmp_path / "a", "lateral_movement")[0]
    b = simulate_event(tmp_path / "b", "lateral_movement")[0]
    assert (a / "vm.pcap").read_bytes() == (b / "vm.pcap").read_bytes()
    assert (a / "labels.csv").read_text() == (b / "labels.csv").read_text()


def test_ssh_bruteforce_sequential_pacing() -> None:
    c = run("ssh_bruteforce", {"rate": 0.5, "pacing": "sequential"})[2]
    gaps = np.diff(np.sort(c["start_ns"])) / S
    assert len(c) >= 2 and (gaps > 2 * 0.7 - 1e-9).all() and (gaps < 2 * 1.3 + 1e-9).all()  # 2 s apart, ±30 %
    with pytest.raises(ConfigError, match="pacing"):
        run("ssh_bruteforce", {"pacing": "burst"})
