"""Flow semantics on hand-built captures with known answers: splits, states, overlays, IPv6, fragments."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from netsentry.pipeline.capture.reader import read_packets
from netsentry.pipeline.capture.tenants import endpoint_labels, tenant_map_from_dict
from netsentry.pipeline.core.schemas import ip_text
from netsentry.pipeline.flows.assemble import FlowConfig, flows_from_packets
from tests import pcapbuild as pb
from tests.tshark_conv import has_tshark

SYN, ACK, FIN, RST, PSH = pb.SYN, pb.ACK, pb.FIN, pb.RST, pb.PSH
C, S = "10.0.0.1", "10.0.0.2"
T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def seg(src: str, dst: str, sp: int, dp: int, flags: int, seq: int = 0, ack: int = 0, data: bytes = b"") -> bytes:
    return pb.ethernet(pb.ipv4(src, dst, pb.TCP, pb.tcp(src, dst, sp, dp, seq=seq, ack=ack, flags=flags, payload=data)))


def handshake_and_close(t0: int, sp: int = 40000, dp: int = 80, isn: int = 1000) -> list[pb.Record]:
    """A complete connection: 3-way handshake, one request and response, FIN both ways."""
    c, s = isn, 5000 + isn
    frames = [
        seg(C, S, sp, dp, SYN, c),
        seg(S, C, dp, sp, SYN | ACK, s, c + 1),
        seg(C, S, sp, dp, ACK, c + 1, s + 1),
        seg(C, S, sp, dp, PSH | ACK, c + 1, s + 1, b"GET / HTTP/1.0\r\n\r\n"),
        seg(S, C, dp, sp, PSH | ACK, s + 1, c + 19, b"HTTP/1.0 200 OK\r\n\r\n"),
        seg(C, S, sp, dp, FIN | ACK, c + 19, s + 20),
        seg(S, C, dp, sp, FIN | ACK, s + 20, c + 20),
        seg(C, S, sp, dp, ACK, c + 20, s + 21),
    ]
    return [pb.Record(f, t0 + i * MS) for i, f in enumerate(frames)]


def flows_of(tmp_path: Path, records: list[pb.Record], name: str = "t.pcap", **cfg: float) -> pa.Table:
    path = pb.write_pcap(tmp_path / name, records)
    packets = pa.concat_tables(list(read_packets(path)))
    return flows_from_packets(packets, FlowConfig(**cfg) if cfg else None)


def test_syn_after_fin_on_same_five_tuple_starts_a_new_flow(tmp_path: Path) -> None:
    recs = handshake_and_close(T0) + handshake_and_close(T0 + 50 * MS, isn=90000)
    flows = flows_of(tmp_path, recs)
    assert flows.num_rows == 2
    assert flows.column("conn_state").to_pylist() == ["SF", "SF"]
    assert flows.column("end_reason").to_pylist() == ["fin", "fin"]
    assert flows.column("bidirectional_packets").to_pylist() == [8, 8]
    assert flows.column("src2dst_packets").to_pylist() == [5, 5]
    assert flows.column("handshake_rtt_ms").to_pylist() == [2.0, 2.0]
    assert flows.column("syn_synack_ms").to_pylist() == [1.0, 1.0]
    if has_tshark():
        streams = subprocess.run(["tshark", "-r", str(tmp_path / "t.pcap"), "-T", "fields", "-e", "tcp.stream"],
                                 capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
        assert len(set(streams)) == 2


def _states(tmp_path: Path, frames: list[bytes]) -> list[str]:
    recs = [pb.Record(f, T0 + i * MS) for i, f in enumerate(frames)]
    return flows_of(tmp_path, recs).column("conn_state").to_pylist()


@pytest.mark.parametrize(
    ("frames", "state"),
    [
        ([seg(C, S, 1, 2, SYN)], "S0"),
        ([seg(C, S, 1, 2, SYN), seg(S, C, 2, 1, RST | ACK, 0, 1)], "REJ"),
        ([seg(C, S, 1, 2, SYN), seg(S, C, 2, 1, SYN | ACK, 7, 1), seg(C, S, 1, 2, ACK, 1, 8)], "S1"),
        ([seg(C, S, 1, 2, SYN), seg(S, C, 2, 1, SYN | ACK, 7, 1), seg(C, S, 1, 2, RST, 1)], "RSTO"),
        ([seg(C, S, 1, 2, SYN), seg(S, C, 2, 1, SYN | ACK, 7, 1), seg(S, C, 2, 1, RST, 8)], "RSTR"),
        ([seg(C, S, 1, 2, SYN), seg(S, C, 2, 1, SYN | ACK, 7, 1), seg(C, S, 1, 2, FIN | ACK, 1, 8)], "S2"),
        ([seg(C, S, 1, 2, SYN), seg(S, C, 2, 1, SYN | ACK, 7, 1), seg(S, C, 2, 1, FIN | ACK, 8, 1)], "S3"),
        ([seg(C, S, 1, 2, SYN), seg(C, S, 1, 2, RST, 1)], "RSTOS0"),
        ([seg(C, S, 1, 2, SYN), seg(C, S, 1, 2, FIN, 1)], "SH"),
        ([seg(S, C, 2, 1, SYN | ACK, 7, 1), seg(S, C, 2, 1, RST, 8)], "RSTRH"),
        ([seg(C, S, 1, 2, PSH | ACK, 100, 200, b"x"), seg(S, C, 2, 1, ACK, 200, 101)], "OTH"),
    ],
)
def test_zeek_like_connection_states(tmp_path: Path, frames: list[bytes], state: str) -> None:
    assert _states(tmp_path, frames) == [state]


def test_udp_states_and_initiator(tmp_path: Path) -> None:
    q = pb.ethernet(pb.ipv4(C, S, pb.UDP, pb.udp(C, S, 5353, 53, b"q")))
    r = pb.ethernet(pb.ipv4(S, C, pb.UDP, pb.udp(S, C, 53, 5353, b"answer")))
    lone = pb.ethernet(pb.ipv4(C, S, pb.UDP, pb.udp(C, S, 5354, 53, b"q")))
    flows = flows_of(tmp_path, [pb.Record(q, T0), pb.Record(r, T0 + MS), pb.Record(lone, T0 + 2 * MS)])
    df = flows.to_pandas()
    assert list(df["conn_state"]) == ["SF", "S0"]
    assert list(df["src_port"]) == [5353, 5354] and list(df["dst_port"]) == [53, 53]
    assert list(ip_text(flows.column("src_ip"))) == [C, C]


def test_capture_starting_at_synack_makes_its_receiver_the_initiator(tmp_path: Path) -> None:
    frames = [seg(S, C, 80, 40000, SYN | ACK, 7, 1), seg(C, S, 40000, 80, ACK, 1, 8)]
    flows = flows_of(tmp_path, [pb.Record(f, T0 + i * MS) for i, f in enumerate(frames)])
    assert list(ip_text(flows.column("src_ip"))) == [C]
    assert flows.column("src_port").to_pylist() == [40000]
    assert flows.column("dst2src_syn_packets").to_pylist() == [1]


def test_idle_timeout_ends_flow_with_reason_idle(tmp_path: Path) -> None:
    q = pb.ethernet(pb.ipv4(C, S, pb.UDP, pb.udp(C, S, 1000, 2000, b"x")))
    recs = [pb.Record(q, T0), pb.Record(q, T0 + 1_000 * MS), pb.Record(q, T0 + 10_000 * MS)]
    flows = flows_of(tmp_path, recs, idle_timeout_s=5.0)
    assert flows.column("bidirectional_packets").to_pylist() == [2, 1]
    assert flows.column("end_reason").to_pylist() == ["idle", "eof"]
    assert flows.column("bidirectional_mean_piat_ms").to_pylist() == [1000.0, 0.0]


def test_vxlan_overlays_reusing_a_cidr_stay_apart_and_get_their_tenants(tmp_path: Path) -> None:
    def overlay(vni: int, t: int) -> pb.Record:
        inner = pb.ethernet(pb.ipv4("10.0.1.5", "10.0.1.6", pb.UDP, pb.udp("10.0.1.5", "10.0.1.6", 7000, 8000, b"hi")))
        outer = pb.udp("192.0.2.1", "192.0.2.2", 50000 + vni, 4789, pb.vxlan(vni, inner))
        return pb.Record(pb.ethernet(pb.ipv4("192.0.2.1", "192.0.2.2", pb.UDP, outer)), t)

    flows = flows_of(tmp_path, [overlay(100, T0), overlay(200, T0 + MS), overlay(100, T0 + 2 * MS)])
    assert sorted(flows.column("vni").to_pylist()) == [100, 200]
    by_vni = {r["vni"]: r for r in flows.to_pylist()}
    assert by_vni[100]["bidirectional_packets"] == 2 and by_vni[200]["bidirectional_packets"] == 1
    tmap = tenant_map_from_dict(
        {
            "vpcs": [
                {"id": "acme", "cidr": "10.0.0.0/16", "vni": 100,
                 "subnets": [{"cidr": "10.0.1.0/24", "ports": [{"ip": "10.0.1.5", "vm": "web-1"}]}]},
                {"id": "globex", "cidr": "10.0.0.0/16", "vni": 200,
                 "subnets": [{"cidr": "10.0.1.0/24", "ports": [{"ip": "10.0.1.5", "vm": "db-1"}]}]},
            ]
        }
    )  # fmt: skip
    packets = pa.concat_tables(list(read_packets(tmp_path / "t.pcap")))
    labelled = flows_from_packets(packets, None, lambda vni, ip: endpoint_labels(vni, ip, tmap))
    got = {(r["vni"], r["tenant"], r["vm"]) for r in labelled.to_pylist()}
    assert got == {(100, "acme", "web-1"), (200, "globex", "db-1")}


def test_ipv6_flow_behind_extension_headers(tmp_path: Path) -> None:
    a, b = "2001:db8::1", "2001:db8::2"
    frames = []
    for src, dst, sp, dp, fl in ((a, b, 5555, 443, SYN), (b, a, 443, 5555, SYN | ACK), (a, b, 5555, 443, ACK)):
        l4 = pb.tcp(src, dst, sp, dp, flags=fl, seq=1 if fl != SYN else 0, ack=0 if fl == SYN else 1)
        frames.append(pb.ethernet(pb.ipv6(src, dst, 60, pb.dest_options(pb.TCP) + l4), pb.ETH_IPV6))
    flows = flows_of(tmp_path, [pb.Record(f, T0 + i * MS) for i, f in enumerate(frames)])
    assert flows.num_rows == 1
    row = flows.to_pylist()[0]
    assert (row["ip_version"], row["src_port"], row["dst_port"], row["conn_state"]) == (6, 5555, 443, "S1")
    assert list(ip_text(flows.column("src_ip"))) == [a]


def test_later_fragments_join_their_first_fragments_flow(tmp_path: Path) -> None:
    payload = pb.udp(C, S, 4444, 53, b"z" * 3000)
    frags = pb.ipv4_fragments(C, S, pb.UDP, payload, size=1480, ident=77)
    recs = [pb.Record(pb.ethernet(f), T0 + i * MS) for i, f in enumerate(frags)]
    flows = flows_of(tmp_path, recs)
    assert flows.num_rows == 1
    row = flows.to_pylist()[0]
    assert (row["src_port"], row["dst_port"], row["bidirectional_packets"], row["fragments"]) == (
        4444, 53, len(frags), len(frags),
    )  # fmt: skip


def test_idle_split_continuation_keeps_the_original_initiator(tmp_path: Path) -> None:
    # an established connection falls silent past the idle timeout; the server speaks first after it
    c, s = 1000, 9000
    frames = [
        (0, seg(C, S, 40000, 443, SYN, c)),
        (1, seg(S, C, 443, 40000, SYN | ACK, s, c + 1)),
        (2, seg(C, S, 40000, 443, ACK, c + 1, s + 1)),
        (3, seg(C, S, 40000, 443, PSH | ACK, c + 1, s + 1, b"ping")),
        (10_000, seg(S, C, 443, 40000, PSH | ACK, s + 1, c + 5, b"late")),
        (10_001, seg(C, S, 40000, 443, ACK, c + 5, s + 5)),
    ]
    flows = flows_of(tmp_path, [pb.Record(f, T0 + ms * MS) for ms, f in frames], idle_timeout_s=5.0)
    assert flows.column("end_reason").to_pylist() == ["idle", "eof"]
    assert list(ip_text(flows.column("src_ip"))) == [C, C]
    assert flows.column("src_port").to_pylist() == [40000, 40000]
    assert flows.column("dst_port").to_pylist() == [443, 443]
    # the server's late segment is the continuation's first packet, counted server -> client
    assert flows.column("dst2src_packets").to_pylist() == [1, 1]


def test_syn_after_idle_split_names_its_own_initiator(tmp_path: Path) -> None:
    # a lone SYN; after the idle timeout the other side sends its own SYN: a new connection, opened by it
    frames = [
        (0, seg(C, S, 40000, 443, SYN, 1)),
        (10_000, seg(S, C, 443, 40000, SYN, 7)),
    ]
    flows = flows_of(tmp_path, [pb.Record(f, T0 + ms * MS) for ms, f in frames], idle_timeout_s=5.0)
    assert list(ip_text(flows.column("src_ip"))) == [C, S]
