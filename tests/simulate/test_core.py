"""The simulator's packet machinery on hand-made connections: TCP dynamics, capture points, pcap bytes."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from netsentry.pipeline.capture.reader import read_packets
from netsentry.pipeline.flows.assemble import flows_from_packets
from netsentry.pipeline.simulate import conns as C
from netsentry.pipeline.simulate import events as ev
from netsentry.pipeline.simulate.cloud import build_cloud
from netsentry.pipeline.simulate.observe import observe
from netsentry.pipeline.simulate.pcapwrite import write_pcap
from netsentry.pipeline.simulate.scenario import Scenario
from netsentry.pipeline.simulate.tcpgen import P_LOST, generate_packets

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
SCENARIO = {
    "name": "core",
    "duration_s": 60,
    "overlay": "vxlan",
    "capture_points": ["vm", "host", "gateway"],
    "cloud": {
        "hosts": 2,
        "external_hosts": 20,
        "tenants": [
            {
                "name": "acme",
                "vpcs": [{"id": "p", "cidr": "10.0.0.0/16", "subnets": [
                    {"name": "w", "cidr": "10.0.1.0/24", "vms": [{"role": "web", "count": 3}, {"role": "db"}]}]}],
            }
        ],
    },
}  # fmt: skip


def _ctx(seed: int = 1) -> ev.SimContext:
    sc = Scenario.model_validate(SCENARIO)
    rng = np.random.default_rng(seed)
    cloud = build_cloud(sc, rng)
    return ev.SimContext(sc, cloud, rng, sc.start_ns, sc.start_ns + 60 * ev.S)


def _mixed_connections(ctx: ev.SimContext, loss_p: float = 0.0) -> C.ConnTable:
    """Web traffic from the internet, DNS inside the VPC, pings, and database transfers."""
    rng, cloud = ctx.rng, ctx.cloud
    t = ctx.poisson_times(20, ctx.t0, ctx.t1 - 5 * ev.S)
    n = len(t)
    ext = rng.choice(cloud.external, n)
    web = rng.integers(0, 3, n)
    apps = rng.choice([C.APP_HTTP, C.APP_TLS, C.APP_SSH], n)
    ports = np.select([apps == C.APP_HTTP, apps == C.APP_TLS], [80, 443], 22)
    web_t = C.ConnTable.make(
        n, start_ns=t, client=ext, server=cloud.ip[web], cport=ctx.ephemeral_ports(n), sport=ports, server_vm=web,
        rtt_ns=ctx.external_rtt_ns(ext), req_bytes=rng.integers(100, 2000, n), app=apps,
        resp_bytes=(rng.pareto(1.2, n) * 3000).astype(int) + 100, rounds=rng.integers(1, 4, n),
        outcome=rng.choice([0, 0, 0, 1, 2, 3, 5], n),
    )  # fmt: skip
    q = ctx.poisson_times(5, ctx.t0, ctx.t1 - 5 * ev.S)
    m = len(q)
    dns = C.ConnTable.make(
        m, start_ns=q, proto=17, client=cloud.ip[0], server=cloud.ip[3], client_vm=0, server_vm=3,
        cport=ctx.ephemeral_ports(m), sport=53, req_bytes=rng.integers(30, 120, m), resp_bytes=rng.integers(60, 400, m),
        app=C.APP_DNS, rtt_ns=250_000,
    )  # fmt: skip
    pings = C.ConnTable.make(5, start_ns=ctx.t0 + np.arange(5) * ev.S, proto=1, client=cloud.ip[0], server=cloud.ip[1],
                             client_vm=0, server_vm=1, cport=77, sport=77, rounds=3, think_ns=ev.S // 10,
                             req_bytes=56, resp_bytes=56)  # fmt: skip
    bulk = C.ConnTable.make(
        10, start_ns=ctx.t0 + np.arange(10) * 3 * ev.S, client=cloud.ip[0], server=cloud.ip[3], client_vm=0,
        server_vm=3, cport=40000 + np.arange(10), sport=5432, req_bytes=500, resp_bytes=300_000, rtt_ns=250_000,
        loss_p=loss_p, loss_from_ns=ctx.t0, loss_to_ns=ctx.t1,
    )  # fmt: skip
    return C.concat([web_t, dns, pings, bulk])


def _write(tmp: Path, ctx: ev.SimContext, conns: C.ConnTable, points: tuple[str, ...] = ("vm",)) -> dict[str, Path]:
    packets = generate_packets(conns, 5)
    out = {}
    for p in points:
        path = tmp / f"{p}.pcap"
        write_pcap(path, observe(packets, conns, ctx.cloud, p))
        out[p] = path
    return out


CHECKSUMS = ["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"]


def _tshark_count(path: Path, display_filter: str, extra: list[str] | None = None) -> int:
    args = ["tshark", "-r", str(path), *(extra or []), "-Y", display_filter]
    return len(subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines())


@needs_tshark
def test_pcaps_parse_cleanly_in_tshark(tmp_path: Path) -> None:
    ctx = _ctx()
    files = _write(tmp_path, ctx, _mixed_connections(ctx, 0.03), ("vm", "host", "gateway"))
    for path in files.values():
        assert _tshark_count(path, "_ws.malformed || _ws.expert.severity >= 8388608") == 0, path
        bad = " || ".join(f"{p}.checksum.status == 0" for p in ("ip", "tcp", "udp", "icmp"))
        assert _tshark_count(path, bad, CHECKSUMS) == 0
        assert _tshark_count(path, "tcp.checksum.status == 1", CHECKSUMS) > 0
    assert _tshark_count(files["host"], "vxlan") > 0
    assert _tshark_count(files["vm"], "dns.flags.response == 1") > 0
    assert _tshark_count(files["vm"], "http.request") > 0


@needs_tshark
def test_loss_makes_retransmissions_and_dup_acks_only_where_injected(tmp_path: Path) -> None:
    ctx = _ctx()
    lossy = _write(tmp_path, ctx, _mixed_connections(ctx, 0.03))["vm"]
    assert _tshark_count(lossy, "tcp.port == 5432 && tcp.analysis.retransmission") >= 10
    assert _tshark_count(lossy, "tcp.port == 5432 && tcp.analysis.duplicate_ack") >= 10
    assert _tshark_count(lossy, "tcp.port == 5432 && tcp.analysis.fast_retransmission") >= 1
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    ctx = _ctx()
    clean = _write(clean_dir, ctx, _mixed_connections(ctx, 0.0))["vm"]
    data_retx = "tcp.analysis.retransmission && tcp.flags.syn == 0"
    assert _tshark_count(clean, data_retx) == 0
    assert _tshark_count(clean, "tcp.analysis.duplicate_ack || tcp.analysis.keep_alive") == 0


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    digests = []
    for run in ("a", "b", "c"):
        d = tmp_path / run
        d.mkdir()
        ctx = _ctx(seed=2 if run != "c" else 3)
        path = _write(d, ctx, _mixed_connections(ctx, 0.02))["vm"]
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1] != digests[2]


def test_a_packet_seen_at_a_later_point_was_seen_at_the_earlier_ones(tmp_path: Path) -> None:
    ctx = _ctx()
    conns = _mixed_connections(ctx, 0.05)
    packets = generate_packets(conns, 5)
    no_loss = packets.copy()
    no_loss[:, P_LOST] = 0
    points = ("vm", "host", "gateway")
    seen = {p: observe(packets, conns, ctx.cloud, p) for p in points}
    on_path = {p: observe(no_loss, conns, ctx.cloud, p) for p in points}
    position = {p: dict(zip(o["row"].tolist(), np.where(o["dir"] == 0, 1.0, -1.0) * _pos(o, p), strict=True))
                for p, o in on_path.items()}  # fmt: skip
    seen_rows = {p: set(o["row"].tolist()) for p, o in seen.items()}
    dropped = 0
    for row in range(len(packets)):
        path = sorted((position[p][row], p) for p in points if row in position[p])  # travel order
        got = [row in seen_rows[p] for _, p in path]
        assert got == sorted(got, reverse=True), f"packet {row}: seen at {got} along {path}"
        dropped += not all(got)
    assert dropped > 0  # some packets were lost between capture points
    # the pcaps agree: a packet at two points has the same hash at both
    files = {p: tmp_path / f"{p}.pcap" for p in points}
    hashes = {}
    for p in points:
        write_pcap(files[p], seen[p])
        t = pa.concat_tables(list(read_packets(files[p])))
        hashes[p] = dict(zip(seen[p]["row"].tolist(), t.column("pkt_hash").to_numpy().tolist(), strict=True))
    for a, b in (("vm", "host"), ("host", "gateway"), ("vm", "gateway")):
        common = hashes[a].keys() & hashes[b].keys()
        assert common and all(hashes[a][r] == hashes[b][r] for r in common)


def _pos(o: dict[str, np.ndarray], point: str) -> np.ndarray:
    """Path position (0 client … 1 server) of each observation, as observe places it."""
    from netsentry.pipeline.simulate.observe import POSITION

    near, far = POSITION[point]
    return np.where(o["client_is_vm"], near, far)


def test_simulated_tcp_gives_sane_flows(tmp_path: Path) -> None:
    ctx = _ctx()
    path = _write(tmp_path, ctx, _mixed_connections(ctx, 0.0))["vm"]
    flows = flows_from_packets(pa.concat_tables(list(read_packets(path)))).to_pandas()
    tcp = flows[flows["protocol"] == 6]
    states = set(tcp["conn_state"])
    assert {"SF", "REJ", "RSTR", "RSTO"} <= states
    assert (tcp["handshake_rtt_ms"].dropna() > 0).all()
    assert tcp["retransmissions"].sum() == 0 and tcp["dup_acks"].sum() == 0
    bulk = tcp[tcp["dst_port"] == 5432]
    assert (bulk["dst2src_payload_bytes"] == 300_000).all()
