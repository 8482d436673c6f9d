"""A capture point that sees routed packets twice (in to the router, and out again one TTL lower): the second copy is
the same packet, not a retransmission; real retransmissions are still counted."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from netsentry.pipeline.capture.reader import read_packets
from netsentry.pipeline.flows.assemble import flows_from_packets
from netsentry.pipeline.flows.hop_duplicates import HopDuplicates
from tests import pcapbuild as pb

SYN, ACK, PSH = pb.SYN, pb.ACK, pb.PSH
C, S = "10.0.1.10", "10.0.2.10"  # two subnets behind one router on a stick
ROUTER_MAC = "02:00:00:00:00:01"
T0 = 1_700_000_000_000_000_000
MS, US = 1_000_000, 1_000


def _frame(src: str, dst: str, sp: int, dp: int, flags: int, seq: int, ack: int, data: bytes, ident: int,
           ttl: int) -> bytes:  # fmt: skip
    tcp = pb.tcp(src, dst, sp, dp, seq=seq, ack=ack, flags=flags, payload=data)
    return pb.ethernet(pb.ipv4(src, dst, pb.TCP, tcp, ident=ident, ttl=ttl, df=True), dst=ROUTER_MAC)


def routed_connection(retransmit: bool, hairpin: bool = True) -> list[pb.Record]:
    """A handshake and 10 request segments each answered by an ACK, every packet seen on its way to the router (TTL
    64) and, with ``hairpin``, again 40 µs later on its way out (TTL 63); with ``retransmit`` the client sends its 5th
    segment again 200 ms later (same TTL, the next IP ID), as a stack does after a loss further on."""
    c, s, data = 1000, 9000, b"x" * 100
    sent = [(C, S, 40000, 80, SYN, c, 0, b""), (S, C, 80, 40000, SYN | ACK, s, c + 1, b""),
            (C, S, 40000, 80, ACK, c + 1, s + 1, b"")]  # fmt: skip
    for i in range(10):
        sent.append((C, S, 40000, 80, PSH | ACK, c + 1 + 100 * i, s + 1, data))
        sent.append((S, C, 80, 40000, ACK, s + 1, c + 1 + 100 * (i + 1), b""))
    recs, ident = [], {C: 100, S: 500}
    for n, (src, dst, sp, dp, flags, seq, ack, payload) in enumerate(sent):
        ident[src] += 1
        t = T0 + n * MS
        recs.append(pb.Record(_frame(src, dst, sp, dp, flags, seq, ack, payload, ident[src], 64), t))
        if hairpin:
            recs.append(pb.Record(_frame(src, dst, sp, dp, flags, seq, ack, payload, ident[src], 63), t + 40 * US))
    if retransmit:
        t = T0 + len(sent) * MS + 200 * MS
        recs.append(pb.Record(_frame(C, S, 40000, 80, PSH | ACK, c + 401, s + 1, data, ident[C] + 1, 64), t))
    return recs


def packets_of(tmp_path: Path, records: list[pb.Record]) -> pa.Table:
    return pa.concat_tables(list(read_packets(pb.write_pcap(tmp_path / "p.pcap", records))))


def test_a_packet_routed_back_past_the_point_is_counted_once(tmp_path: Path) -> None:
    straight = flows_from_packets(packets_of(tmp_path, routed_connection(retransmit=True, hairpin=False)))
    hops = HopDuplicates()
    packets = packets_of(tmp_path, routed_connection(retransmit=True))
    assert packets.num_rows == 2 * 23 + 1
    flows = flows_from_packets(packets)
    assert flows.num_rows == 1
    assert flows.column("retransmissions").to_pylist() == [1]  # the real one only
    for col in ("bidirectional_packets", "bidirectional_bytes", "retransmissions", "dup_acks", "conn_state"):
        assert flows.column(col).to_pylist() == straight.column(col).to_pylist(), col
    assert hops.filter(packets).num_rows == 24 and hops.dropped == 23


def test_only_a_lower_ttl_soon_after_makes_a_copy(tmp_path: Path) -> None:
    packets = packets_of(tmp_path, routed_connection(retransmit=False))
    ttl = packets.column("ttl").to_numpy().copy()
    ttl[1::2] = 64  # the same packet again with the same TTL: a sender's own repeat (a stack with constant IP IDs)
    same_ttl = packets.set_column(
        packets.schema.get_field_index("ttl"), "ttl", pa.array(ttl, packets.schema.field("ttl").type)
    )
    hops = HopDuplicates()
    assert hops.filter(same_ttl).num_rows == packets.num_rows and hops.dropped == 0
    late = HopDuplicates(window_ns=20 * US)  # the copy 40 µs later, past a 20 µs window
    assert late.filter(packets).num_rows == packets.num_rows


def test_a_copy_in_the_next_chunk_is_found(tmp_path: Path) -> None:
    packets = packets_of(tmp_path, routed_connection(retransmit=False))
    hops = HopDuplicates()
    first, second = packets.slice(0, 7), packets.slice(7)  # row 7 is row 6's copy, one chunk later
    kept = hops.filter(first).num_rows + hops.filter(second).num_rows
    assert kept == 23 and hops.dropped == 23
