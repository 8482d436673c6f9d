"""Network faults: exactly the connections on the scoped path are impaired, in the window; incast and
RST storms add their traffic; and, in the written pcaps, tshark sees retransmissions and duplicate
ACKs where loss was injected and (almost) none elsewhere."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import yaml

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.simulate import faults as F
from netsentry.pipeline.simulate.benign import benign_connections
from netsentry.pipeline.simulate.conns import (
    OUTCOME_ADMIN_PROHIBITED,
    OUTCOME_NET_UNREACHABLE,
    OUTCOME_REJECT,
    OUTCOME_RST_SERVER,
    ConnTable,
)
from netsentry.pipeline.simulate.events import FAULTS, MS, S, SimContext
from tests.simulate.test_benign import make_ctx, tenant

TSHARK = shutil.which("tshark") or ("/usr/bin/tshark" if Path("/usr/bin/tshark").exists() else None)
ROLES_A = {"web": 2, "app": 2, "db": 1, "dns": 1, "admin": 1}
ROLES_B = {"web": 1, "app": 2, "db": 1}


@pytest.fixture(scope="module")
def base() -> tuple[SimContext, ConnTable]:
    """11 VMs on 4 hosts, 60 s of benign traffic."""
    ctx = make_ctx([tenant("a", "10.0.0.0/24", ROLES_A), tenant("b", "10.1.0.0/24", ROLES_B)], 60, seed=3)
    return ctx, benign_connections(ctx)


def window(ctx: SimContext, a_s: float, b_s: float) -> tuple[int, int]:
    return ctx.t0 + int(a_s * S), ctx.t0 + int(b_s * S)


def hosts_of(ctx: SimContext, c: ConnTable) -> tuple[np.ndarray, np.ndarray]:
    """Independent of faults.py: host of each end, -1 for the internet."""
    h = ctx.cloud.host
    hc = np.where(c["client_vm"] >= 0, h[np.maximum(c["client_vm"], 0)], -1)
    hs = np.where(c["server_vm"] >= 0, h[np.maximum(c["server_vm"], 0)], -1)
    return hc, hs


def same_rows(a: ConnTable, b: ConnTable, rows: np.ndarray | slice = slice(None)) -> bool:
    return all(np.array_equal(a[k][rows], b[k][rows]) for k in a.cols)


def test_registered() -> None:
    assert {"loss_burst", "latency_spike", "blackhole", "microburst", "incast", "rst_storm"} <= set(FAULTS)


# ---------------------------------------------------------------- path faults


@pytest.mark.parametrize("host", [0, 1, 2, 3])
def test_loss_burst_on_a_host_uplink(base: tuple[SimContext, ConnTable], host: int) -> None:
    ctx, c = base
    s, e = window(ctx, 20, 30)
    before = F.copy_table(c)
    out, labels = FAULTS["loss_burst"](ctx, c, f"host{host}", s, e, {})
    assert same_rows(c, before)  # the input is untouched
    assert len(out) == len(c)
    hit = out["loss_p"] > 0
    hc, hs = hosts_of(ctx, out)
    crosses = (hc == host) != (hs == host)  # one end on the host, the other beyond its uplink
    assert hit.sum() > 20
    assert not (hit & ~crosses).any()  # nothing off the path
    assert not (hit & (hc == host) & (hs == host)).any()  # intra-host traffic never reaches the uplink
    # every crossing connection that starts inside the window is impaired; none starting after it
    starts_in = (out["start_ns"] >= s) & (out["start_ns"] < e)
    assert (hit[crosses & starts_in]).all()
    assert not (hit & (out["start_ns"] >= e)).any()
    assert np.allclose(out["loss_p"][hit], 0.05)
    assert (out["loss_from_ns"][hit] == s).all() and (out["loss_to_ns"][hit] == e).all()
    assert (out["loss_to_ns"][~hit] == 0).all()
    # only the loss columns change
    for k in out.cols:
        if not k.startswith("loss"):
            assert np.array_equal(out[k], c[k])
    (lab,) = labels
    assert (lab.kind, lab.scenario, lab.scope_type, lab.scope) == ("fault", "loss_burst", "host", f"host{host}")
    assert (lab.start_ns, lab.end_ns) == (s, e)


def test_loss_burst_at_the_gateway_and_between_hosts(base: tuple[SimContext, ConnTable]) -> None:
    ctx, c = base
    s, e = window(ctx, 5, 15)
    out, (lab,) = FAULTS["loss_burst"](ctx, c, "gateway", s, e, {"loss": 0.08})
    hit = out["loss_p"] > 0
    internet = (out["client_vm"] < 0) | (out["server_vm"] < 0)
    starts_in = (out["start_ns"] >= s) & (out["start_ns"] < e)
    assert not (hit & ~internet).any() and hit[internet & starts_in].all()
    assert np.allclose(out["loss_p"][hit], 0.08)
    assert (lab.scope_type, lab.scope) == ("link", "gateway")

    hc, hs = hosts_of(ctx, c)
    pairs = {(min(a, b), max(a, b)) for a, b in zip(hc, hs, strict=True) if a >= 0 and b >= 0 and a != b}
    a, b = sorted(pairs)[0]
    out, (lab,) = FAULTS["loss_burst"](ctx, c, f"host{b}-host{a}", s, e, {"loss_p": 0.2})
    hit = out["loss_p"] > 0
    on_pair = ((hc == a) & (hs == b)) | ((hc == b) & (hs == a))
    assert hit.any() and not (hit & ~on_pair).any() and hit[on_pair & starts_in].all()
    assert (lab.scope_type, lab.scope) == ("host_pair", f"host{b}-host{a}")


def test_vm_target_means_its_host_uplink(base: tuple[SimContext, ConnTable]) -> None:
    ctx, c = base
    s, e = window(ctx, 10, 20)
    vm = "a-app-1"
    h = int(ctx.cloud.host[ctx.cloud.index(vm)])
    by_vm, (lab,) = FAULTS["loss_burst"](ctx, c, vm, s, e, {})
    by_host, _ = FAULTS["loss_burst"](ctx, c, f"host{h}", s, e, {})
    assert same_rows(by_vm, by_host)
    assert (lab.scope_type, lab.scope, lab.vm, lab.tenant) == ("host", f"host{h}", vm, "a")


def test_latency_spike(base: tuple[SimContext, ConnTable]) -> None:
    ctx, c = base
    s, e = window(ctx, 30, 36)
    out, (lab,) = FAULTS["latency_spike"](ctx, c, "gateway", s, e, {})
    hit = out["delay_ns"] > 0
    internet = (out["client_vm"] < 0) | (out["server_vm"] < 0)
    assert hit.sum() > 20 and not (hit & ~internet).any()
    assert (out["delay_ns"][hit] == 80 * MS).all()
    assert (out["delay_from_ns"][hit] == s).all() and (out["delay_to_ns"][hit] == e).all()
    assert not (out["loss_p"] > 0).any()
    assert lab.scenario == "latency_spike" and "delay_ms=80" in lab.detail
    out, _ = FAULTS["latency_spike"](ctx, c, "gateway", s, e, {"delay_ms": 250})
    assert (out["delay_ns"][out["delay_ns"] > 0] == 250 * MS).all()


def test_windows_merge(base: tuple[SimContext, ConnTable]) -> None:
    """Overlapping windows merge (union, stronger loss); a disjoint weaker one leaves the stronger."""
    ctx, c = base
    out, _ = FAULTS["loss_burst"](ctx, c, "gateway", *window(ctx, 10, 20), {"loss_p": 0.05})
    out, _ = FAULTS["loss_burst"](ctx, out, "gateway", *window(ctx, 15, 25), {"loss_p": 0.1})
    s1, _ = window(ctx, 10, 20)
    _, e2 = window(ctx, 15, 25)
    both = out["loss_p"] > 0
    started_early = both & (out["start_ns"] < window(ctx, 12, 12)[0]) & (out["start_ns"] >= s1)
    assert started_early.any()
    assert np.allclose(out["loss_p"][started_early], 0.1)
    assert (out["loss_from_ns"][started_early] == s1).all() and (out["loss_to_ns"][started_early] == e2).all()
    # a weaker disjoint window does not replace a stronger one; a stronger one does
    one, _ = FAULTS["loss_burst"](ctx, c, "gateway", *window(ctx, 10, 11), {"loss_p": 0.5})
    two, _ = FAULTS["loss_burst"](ctx, one, "gateway", *window(ctx, 40, 41), {"loss_p": 0.1})
    old = one["loss_p"] > 0
    assert same_rows(one, two, old)
    three, _ = FAULTS["blackhole"](ctx, one, "gateway", *window(ctx, 40, 41), {})
    long_lived = old & (three["loss_p"] == 1.0)
    assert (three["loss_from_ns"][long_lived] == window(ctx, 40, 41)[0]).all()


def test_merge_rules_on_one_connection() -> None:
    """One window per connection: overlap → union with the larger value; disjoint → the stronger, on a tie
    the earlier."""
    c = ConnTable.make(1, start_ns=0, client=1, server=2, cport=1, sport=2)
    every = np.ones(1, dtype=bool)

    def loss(*windows: tuple[float, int, int]) -> tuple[float, int, int]:
        t = F.copy_table(c)
        for p, a, b in windows:
            F.set_loss(t, every, p, a, b)
        return round(float(t["loss_p"][0]), 3), int(t["loss_from_ns"][0]), int(t["loss_to_ns"][0])

    assert loss((0.05, 10, 20)) == (0.05, 10, 20)
    assert loss((0.05, 10, 20), (0.1, 15, 30)) == (0.1, 10, 30)  # overlapping
    assert loss((0.05, 10, 20), (0.1, 20, 30)) == (0.1, 10, 30)  # touching
    assert loss((0.5, 10, 20), (0.1, 40, 50)) == (0.5, 10, 20)  # disjoint, weaker
    assert loss((0.1, 10, 20), (0.5, 40, 50)) == (0.5, 40, 50)  # disjoint, stronger
    assert loss((0.05, 40, 50), (0.05, 10, 20)) == (0.05, 10, 20)  # disjoint tie: the earlier
    assert loss((0.05, 10, 20), (0.05, 40, 50)) == (0.05, 10, 20)
    t = F.copy_table(c)
    F.set_delay(t, every, 80 * MS, 10, 20)
    F.set_delay(t, every, 20 * MS, 15, 25)
    assert (t["delay_ns"][0], t["delay_from_ns"][0], t["delay_to_ns"][0]) == (80 * MS, 10, 25)


def test_blackhole_adds_probes_on_a_quiet_path(base: tuple[SimContext, ConnTable]) -> None:
    ctx, _ = base
    s, e = window(ctx, 20, 23)
    out, (lab,) = FAULTS["blackhole"](ctx, ConnTable(), "host1", s, e, {})
    assert len(out) == 8 and "added=8" in lab.detail
    hc, hs = hosts_of(ctx, out)
    assert ((hc == 1) != (hs == 1)).all()
    assert (out["loss_p"] == 1.0).all() and (out["loss_from_ns"] == s).all() and (out["loss_to_ns"] == e).all()
    assert (out["start_ns"] < s).sum() == 4 and ((out["start_ns"] >= s) & (out["start_ns"] < e)).sum() == 4
    early = out["start_ns"] < s
    assert (out["req_bytes"][early] >= 1_000_000).all()  # uploads from the VM, caught mid-transfer
    # a busy path gets no probes
    _, c = base
    busy, (lab,) = FAULTS["blackhole"](ctx, c, "gateway", s, e, {})
    assert len(busy) == len(c) and "added=0" in lab.detail
    assert (busy["loss_p"] == 1.0).sum() > 20
    pair, _ = FAULTS["blackhole"](ctx, ConnTable(), "host0-host2", s, e, {"probes": 4})
    hc, hs = hosts_of(ctx, pair)
    assert len(pair) == 4 and (np.minimum(hc, hs) == 0).all() and (np.maximum(hc, hs) == 2).all()


# ---------------------------------------------------------------- receiver faults


@pytest.mark.parametrize("name", ["incast", "microburst"])
def test_incast_converges_on_one_vm(base: tuple[SimContext, ConnTable], name: str) -> None:
    ctx, c = base
    s, e = window(ctx, 40, 43)
    vm = ctx.cloud.index("a-web-1")
    out, (lab,) = FAULTS[name](ctx, c, "a-web-1", s, e, {})
    assert same_rows(F.copy_table(c), c)
    added = _added(c, out)
    assert len(added) == 3 * 32  # a burst a second, 32 responses each
    assert (added["client_vm"] == vm).all() and (added["client"] == ctx.cloud.ip[vm]).all()
    assert (added["resp_bytes"] == 65536).all() and (added["server_vm"] >= 0).all()
    vpc = np.array(ctx.cloud.vpc, dtype=object)
    assert (vpc[added["server_vm"]] == vpc[vm]).all() and (added["server_vm"] != vm).all()
    # each burst: requests within 0.2 ms, the responses reach the receiver within 2 ms of each other
    rtt = added["rtt_ns"]
    arrive = added["start_ns"] + 3 * rtt // 2 + 2 * 20_000 + added["server_ns"] + rtt // 2
    for b in range(3):
        m = (added["start_ns"] >= s + b * S) & (added["start_ns"] < s + b * S + S // 2)
        assert m.sum() == 32
        assert np.ptp(added["start_ns"][m]) < 200_000 and np.ptp(arrive[m]) <= 2 * MS
    assert np.allclose(added["loss_p"], 0.02)
    assert ((added["loss_to_ns"] - added["loss_from_ns"]) == 50 * MS).all()
    assert (lab.scope_type, lab.scope, lab.vm, lab.scenario) == ("vm", "10.0.0.10", "a-web-1", name)
    # from the internet, and on a host
    out, (lab,) = FAULTS[name](ctx, c, "a-web-1", s, s + S // 2, {"sources": "internet", "fanin": 8})
    added = _added(c, out)
    assert len(added) == 8 and (added["server_vm"] == -1).all() and len(np.unique(added["server"])) == 8
    h = int(ctx.cloud.host[vm])
    out, (lab,) = FAULTS[name](ctx, c, f"host{h}", s, e, {})
    assert ctx.cloud.host[_added(c, out)["client_vm"][0]] == h and lab.scope_type == "vm"


def _added(before: ConnTable, after: ConnTable) -> ConnTable:
    """Rows of ``after`` not in ``before`` (by start time, client and ports)."""
    key = lambda t: set(zip(t["start_ns"].tolist(), t["client"].tolist(), t["cport"].tolist(),  # noqa: E731
                            t["sport"].tolist(), strict=True))  # fmt: skip
    old = key(before)
    keep = np.array([k not in old for k in zip(after["start_ns"].tolist(), after["client"].tolist(),
                                                 after["cport"].tolist(), after["sport"].tolist(), strict=True)],
                    dtype=bool)  # fmt: skip
    return after.select(keep)


def test_rst_storm(base: tuple[SimContext, ConnTable]) -> None:
    ctx, c = base
    s, e = window(ctx, 10, 20)
    vm = ctx.cloud.index("a-app-1")
    out, (lab,) = FAULTS["rst_storm"](ctx, c, "a-app-1", s, e, {})
    added = _added(c, out)
    old = out.select(~_is_added(c, out))
    # the service's own connections that start in the window are reset after the request
    served = (old["server_vm"] == vm) & (old["proto"] == 6)
    inside = (old["start_ns"] >= s) & (old["start_ns"] < e)
    assert (served & inside).sum() > 10
    assert (old["outcome"][served & inside] == OUTCOME_RST_SERVER).all()
    assert (old["resp_bytes"][served & inside] == 0).all()
    untouched = ~(served & inside)
    assert all(np.array_equal(old[k][untouched], c[k][untouched]) for k in c.cols)
    # plus ~50/s clients that get reset or refused, on the service's port (8080: web VMs call it)
    assert 500 - 4 * 22 < len(added) < 500 + 4 * 22
    assert (added["server_vm"] == vm).all() and (added["sport"] == 8080).all()
    assert np.isin(added["outcome"], (OUTCOME_RST_SERVER, OUTCOME_REJECT)).all()
    assert 0.2 < (added["outcome"] == OUTCOME_REJECT).mean() < 0.4
    assert (added["start_ns"] >= s).all() and (added["start_ns"] < e).all()
    assert (lab.scope_type, lab.vm, lab.scenario) == ("vm", "a-app-1", "rst_storm")
    # a web VM is hit by internet clients on 80/443
    out, _ = FAULTS["rst_storm"](ctx, c, "b-web-1", s, e, {"rate": 20})
    added = _added(c, out)
    assert len(added) > 100 and (added["client_vm"] == -1).all() and np.isin(added["sport"], (80, 443)).all()


def _is_added(before: ConnTable, after: ConnTable) -> np.ndarray:
    old = set(zip(before["start_ns"].tolist(), before["client"].tolist(), before["cport"].tolist(), strict=True))
    return np.array([k not in old for k in zip(after["start_ns"].tolist(), after["client"].tolist(),
                                                after["cport"].tolist(), strict=True)], dtype=bool)  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "target", "params"),
    [
        ("loss_burst", "host9", {}),
        ("loss_burst", "host1-host1", {}),
        ("loss_burst", "nosuchvm", {}),
        ("loss_burst", "gateway", {"loss_p": 2}),
        ("loss_burst", "gateway", {"los": 0.1}),
        ("latency_spike", "gateway", {"delay_ms": "slow"}),
        ("incast", "gateway", {}),
        ("rst_storm", "host0-host1", {}),
    ],
)
def test_bad_targets_and_params(base: tuple[SimContext, ConnTable], kind: str, target: str,
                                params: dict[str, Any]) -> None:  # fmt: skip
    ctx, c = base
    with pytest.raises(ConfigError):
        FAULTS[kind](ctx, c, target, *window(ctx, 1, 2), params)


def test_faults_are_deterministic() -> None:
    def run(seed: int) -> ConnTable:
        ctx = make_ctx([tenant("a", "10.0.0.0/24", ROLES_A)], 30, seed=seed)
        c = benign_connections(ctx)
        for kind, target in (("blackhole", "host1"), ("incast", "a-web-1"), ("rst_storm", "a-db-1")):
            c, _ = FAULTS[kind](ctx, c, target, *window(ctx, 5, 10), {})
        return c

    assert same_rows(run(4), run(4))


# ---------------------------------------------------------------- packets (run.py + tshark)


def _scenario(tmp_path: Path, events: list[dict[str, Any]], name: str = "faulty") -> Path:
    sc = {
        "name": name, "duration_s": 30, "seed": 5, "capture_points": ["vm"], "ambient_impairments": False,
        "cloud": {"hosts": 3, "external_hosts": 40,
                  "tenants": [tenant("a", "10.0.0.0/24", ROLES_A), tenant("b", "10.1.0.0/24", ROLES_B)]},
        "events": events,
    }  # fmt: skip
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(sc))
    return p


def _tshark_flags(pcap: Path) -> dict[str, np.ndarray]:
    """Times and addresses of the packets tshark flags as retransmissions or duplicate ACKs (without
    TCP reassembly: the analysis flags do not need it, and reassembling for application dissectors can
    be slow)."""
    fields = ["frame.time_epoch", "ip.src", "ip.dst", "tcp.analysis.retransmission",
              "tcp.analysis.fast_retransmission", "tcp.analysis.duplicate_ack"]  # fmt: skip
    flagged = "tcp.analysis.retransmission || tcp.analysis.fast_retransmission || tcp.analysis.duplicate_ack"
    out = subprocess.run(
        [TSHARK, "-n", "-r", str(pcap), "-o", "tcp.desegment_tcp_streams:FALSE", "-Y", flagged, "-T", "fields",
         "-E", "separator=,", *[a for f in fields for a in ("-e", f)]],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout.splitlines()  # fmt: skip
    rows = [line.split(",") for line in out if line]
    return {
        "t": np.array([float(r[0]) for r in rows]),
        "src": np.array([r[1] for r in rows], dtype=object),
        "dst": np.array([r[2] for r in rows], dtype=object),
        "retx": np.array([bool(r[3] or r[4]) for r in rows], dtype=bool),
        "dup": np.array([bool(r[5]) for r in rows], dtype=bool),
    }


def _host_of_ip(res: Any) -> dict[str, int]:
    cloud = res.cloud
    return {".".join(str((int(ip) >> k) & 0xFF) for k in (24, 16, 8, 0)): int(h)
            for ip, h in zip(cloud.ip, cloud.host, strict=True)}  # fmt: skip


needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")


@needs_tshark
def test_pcap_loss_burst_shows_retransmissions_only_on_the_path(tmp_path: Path) -> None:
    from netsentry.pipeline.simulate.stage import simulate_to_dir

    clean = simulate_to_dir(_scenario(tmp_path, [], "clean"), tmp_path / "clean")
    flags = _tshark_flags(tmp_path / "clean" / "vm.pcap")
    assert clean.files["vm"] > 5000
    assert len(flags["t"]) <= clean.files["vm"] // 1000  # (almost) none without loss

    ev = {"kind": "fault", "type": "loss_burst", "target": "a-app-1", "start_s": 10, "duration_s": 10,
          "params": {"loss_p": 0.1}}  # fmt: skip
    res = simulate_to_dir(_scenario(tmp_path, [ev]), tmp_path / "lossy")
    (lab,) = res.labels
    h = int(lab.scope.removeprefix("host"))
    flags = _tshark_flags(tmp_path / "lossy" / "vm.pcap")
    assert flags["retx"].sum() >= 20 and flags["dup"].sum() >= 20
    where = _host_of_ip(res)
    hs = np.array([where.get(a, -1) for a in flags["src"]])
    hd = np.array([where.get(a, -1) for a in flags["dst"]])
    on_path = (hs == h) != (hd == h)
    t0 = lab.start_ns / S
    in_time = (flags["t"] >= t0) & (flags["t"] < lab.end_ns / S + 3)  # + retransmission timeouts
    assert (on_path & in_time).mean() >= 0.98


@needs_tshark
def test_pcap_blackhole_backs_off(tmp_path: Path) -> None:
    from netsentry.pipeline.capture.reader import read_packets
    from netsentry.pipeline.core.schemas import ip16_numpy
    from netsentry.pipeline.simulate.stage import simulate_to_dir

    ev = {
        "kind": "fault",
        "type": "blackhole",
        "target": "gateway",
        "start_s": 10,
        "duration_s": 4,
        "params": {"min_conns": 1000},
    }  # the gateway is busy: ask for the probe uploads anyway
    res = simulate_to_dir(_scenario(tmp_path, [ev], "hole"), tmp_path / "hole")
    (lab,) = res.labels
    flags = _tshark_flags(tmp_path / "hole" / "vm.pcap")
    assert flags["retx"].sum() >= 10
    # retransmissions of one segment leave at growing intervals (RTO back-off)
    tab = pa.concat_tables(read_packets(tmp_path / "hole" / "vm.pcap"))
    ts = tab["ts_ns"].to_numpy()
    src = ip16_numpy(tab["src_ip"])[:, 12:].copy().view(">u4").ravel()
    key = np.stack([src.astype(np.int64), tab["src_port"].to_numpy().astype(np.int64),
                    tab["tcp_seq"].to_numpy().astype(np.int64)], axis=1)  # fmt: skip
    data = (tab["payload_len"].to_numpy() > 0) | ((tab["tcp_flags"].to_numpy() & 0x02) > 0)
    data &= (ts >= lab.start_ns) & (ts < lab.end_ns + 5 * S) & (tab["proto"].to_numpy() == 6)
    _, inverse, counts = np.unique(key[data], axis=0, return_inverse=True, return_counts=True)
    repeated = np.flatnonzero(counts >= 4)
    assert len(repeated) >= 1
    backed_off = 0
    for g in repeated:
        gaps = np.diff(np.sort(ts[data][inverse.ravel() == g]))
        backed_off += bool((gaps[1:] > 1.5 * gaps[:-1]).all())
    assert backed_off >= 1


@needs_tshark
def test_pcap_latency_spike_slows_handshakes(tmp_path: Path) -> None:
    """At a VM's tap, SYN → SYN-ACK to an internet server takes the RTT (8–121 ms), +160 ms in the spike."""
    from netsentry.pipeline.capture.reader import read_packets
    from netsentry.pipeline.core.schemas import ip16_numpy
    from netsentry.pipeline.simulate.stage import simulate_to_dir

    ev = {"kind": "fault", "type": "latency_spike", "target": "gateway", "start_s": 10, "duration_s": 10}
    res = simulate_to_dir(_scenario(tmp_path, [ev], "slow"), tmp_path / "slow")
    (lab,) = res.labels
    tab = pa.concat_tables(read_packets(tmp_path / "slow" / "vm.pcap"))
    ts, flags = tab["ts_ns"].to_numpy(), tab["tcp_flags"].to_numpy()
    src = ip16_numpy(tab["src_ip"])[:, 12:].copy().view(">u4").ravel().astype(np.int64)
    dst = ip16_numpy(tab["dst_ip"])[:, 12:].copy().view(">u4").ravel().astype(np.int64)
    sp, dp = tab["src_port"].to_numpy().astype(np.int64), tab["dst_port"].to_numpy().astype(np.int64)
    vm_ips = set(res.cloud.ip.astype(np.int64).tolist())
    syn = np.flatnonzero((flags & 0x12) == 0x02)
    synack = {(int(a), int(b), int(c), int(d)): int(t) for a, b, c, d, t in zip(
        src[(flags & 0x12) == 0x12], dst[(flags & 0x12) == 0x12], sp[(flags & 0x12) == 0x12],
        dp[(flags & 0x12) == 0x12], ts[(flags & 0x12) == 0x12], strict=True)}  # fmt: skip
    inside, outside = [], []
    for i in syn:
        if int(src[i]) not in vm_ips or int(dst[i]) in vm_ips:
            continue  # a VM calling an internet server: its tap sees the whole round trip
        answer = synack.get((int(dst[i]), int(src[i]), int(dp[i]), int(sp[i])))
        if answer is None:
            continue
        rtt_ms = (answer - ts[i]) / MS
        if lab.start_ns <= ts[i] < lab.end_ns - S // 2:
            inside.append(rtt_ms)
        elif ts[i] < lab.start_ns - S // 2 or ts[i] >= lab.end_ns:
            outside.append(rtt_ms)
    assert len(inside) >= 3 and len(outside) >= 10
    assert min(inside) >= 160 + 8 and max(outside) < 125


# ---------------------------------------------------------------- gateway configuration changes


CUTS = [
    ("route_withdrawn", "silent", None),
    ("route_withdrawn", "icmp", OUTCOME_NET_UNREACHABLE),
    ("filter_pushed", "icmp", OUTCOME_ADMIN_PROHIBITED),
]


@pytest.mark.parametrize(("action", "answer", "outcome"), CUTS)
def test_config_change_cuts_one_subnet_off_the_internet(base: tuple[SimContext, ConnTable], action: str, answer: str,
                                                        outcome: int | None) -> None:  # fmt: skip
    ctx, c = base
    s, e = window(ctx, 20, 26)
    out, (lab,) = FAULTS["config_change"](ctx, c, "b/b-sub", s, e, {"action": action, "answer": answer})
    members = np.flatnonzero(np.array(ctx.cloud.tenant) == "b")
    in_b = np.isin(out["client_vm"], members) | np.isin(out["server_vm"], members)
    internet = (out["client_vm"] < 0) | (out["server_vm"] < 0)
    hit = out["loss_p"] == 1.0
    assert hit.sum() > 5 and not (hit & ~(in_b & internet)).any()  # other subnets and VM-to-VM traffic untouched
    assert hit[in_b & internet & (out["start_ns"] >= s) & (out["start_ns"] < e)].all()
    assert (lab.scope_type, lab.scope, lab.tenant) == ("link", "gateway", "b")
    assert f"subnet=10.1.0.0/24; action={action}; answer={answer}" in lab.detail
    # vms= lists the subnet's VMs with at least MIN_CUT_CONNECTIONS connections across the cut starting in it
    tried = hit & (out["start_ns"] >= s) & (out["start_ns"] < e)
    crossing = np.concatenate([out["client_vm"][tried], out["server_vm"][tried]])
    shows = {F._address(int(ctx.cloud.ip[v])) for v in members if (crossing == v).sum() >= F.MIN_CUT_CONNECTIONS}
    assert shows and set(lab.detail.split("vms=")[1].split(",")) == shows
    new_out = hit & np.isin(out["client_vm"], members) & (out["start_ns"] >= s) & (out["proto"] == 6)
    if outcome is None:
        assert not np.isin(out["outcome"], (OUTCOME_NET_UNREACHABLE, OUTCOME_ADMIN_PROHIBITED)).any()
    else:  # the subnet's own new connections are refused by its router, and not retried
        assert new_out.sum() >= 1 and (out["outcome"][new_out] == outcome).all()
        assert (out["syn_retries"][new_out] == 0).all() and f"refused={int(new_out.sum())}" in lab.detail
    # a VM name names its subnet
    _, (by_vm,) = FAULTS["config_change"](ctx, c, ctx.cloud.name[members[0]], s, e, {})
    assert "subnet=10.1.0.0/24" in by_vm.detail


def test_config_change_errors_name_what_is_wrong(base: tuple[SimContext, ConnTable]) -> None:
    ctx, c = base
    s, e = window(ctx, 20, 26)
    with pytest.raises(ConfigError, match="names no subnet"):
        FAULTS["config_change"](ctx, c, "b/nowhere", s, e, {})
    with pytest.raises(ConfigError, match="action must be one of route_withdrawn, filter_pushed"):
        FAULTS["config_change"](ctx, c, "b/b-sub", s, e, {"action": "reboot"})


def _tshark_fields(pcap: Path, display: str, fields: list[str]) -> list[list[str]]:
    """One row per packet ``display`` selects: the first occurrence of each field (absolute TCP sequence numbers)."""
    out = subprocess.run(
        [TSHARK, "-n", "-o", "tcp.relative_sequence_numbers:FALSE", "-r", str(pcap), "-Y", display, "-T", "fields",
         "-E", "separator=,", "-E", "occurrence=f", *[a for f in fields for a in ("-e", f)]],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout.splitlines()  # fmt: skip
    return [line.split(",") for line in out if line]


@needs_tshark
def test_pcap_config_change_router_refuses_with_icmp(tmp_path: Path) -> None:
    """tshark reads the router's ICMP destination unreachable (good checksum) quoting each refused SYN, which is
    never retried."""
    from netsentry.pipeline.simulate.stage import simulate_to_dir

    ev = {"kind": "fault", "type": "config_change", "target": "a/a-sub", "start_s": 10, "duration_s": 8,
          "params": {"action": "filter_pushed", "answer": "icmp", "min_conns": 1000}}  # fmt: skip
    res = simulate_to_dir(_scenario(tmp_path, [ev], "cut"), tmp_path / "cut")
    (lab,) = res.labels
    pcap = tmp_path / "cut" / "vm.pcap"
    fields = ["frame.time_epoch", "ip.src", "ip.dst", "icmp.code", "icmp.checksum.status", "tcp.srcport", "tcp.seq"]
    rows = _tshark_fields(pcap, "icmp.type == 3", fields)
    assert len(rows) >= 2
    t = np.array([float(r[0]) for r in rows])
    assert ((t >= lab.start_ns / S) & (t < lab.end_ns / S + 0.5)).all()
    assert {r[1] for r in rows} == {"10.0.0.1"} and all(r[2].startswith("10.0.0.") for r in rows)
    assert {r[3] for r in rows} == {"13"} and {r[4] for r in rows} == {"1"}
    syns = [tuple(r) for r in _tshark_fields(pcap, "tcp.flags == 0x002", ["tcp.srcport", "tcp.seq"])]
    for r in rows:  # the quoted SYN is the VM's (port, ISN), sent once
        assert syns.count((r[5], r[6])) == 1
