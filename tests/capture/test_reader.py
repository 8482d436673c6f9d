"""Reader correctness: synthetic captures of every supported shape checked against known answers
and, field by field, against tshark; fragments; chunked reading; the shared real traces."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from netsentry.pipeline.capture.reader import CaptureStats
from netsentry.pipeline.core.schemas import ip_text
from tests.pcapbuild import (
    ACK,
    AF_INET,
    AF_INET6_BSD,
    AF_INET6_DARWIN,
    CWR,
    DSTOPTS,
    ECE,
    ETH_ARP,
    ETH_IPV4,
    ETH_IPV6,
    FIN,
    FRAGMENT,
    GENEVE_PORT,
    HOPOPTS,
    ICMP,
    ICMPV6,
    LINKTYPE_ETHERNET,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPE_SLL,
    LINKTYPE_SLL2,
    NS,
    PSH,
    ROUTING,
    SYN,
    TCP,
    UDP,
    VXLAN_PORT,
    Interface,
    Record,
    arp_request,
    dest_options,
    ethernet,
    fragment_header,
    geneve,
    geneve_option,
    hop_by_hop,
    icmp_echo,
    icmp_unreachable,
    icmpv6_echo,
    ipv4,
    ipv4_fragments,
    ipv6,
    null_loopback,
    pcap_timestamp_ns,
    pcapng_bytes,
    router_alert,
    routing_header,
    sll,
    sll2,
    tcp,
    tcp_options,
    ts_units,
    udp,
    units_ns,
    vxlan,
    write_pcap,
    write_pcapng,
)

ReadCapture = Callable[..., tuple[pa.Table, CaptureStats]]
TsharkRows = list[dict[str, list[str]]]
Tshark = Callable[..., TsharkRows]

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")

T0 = 1_700_000_000_123_456_789  # a timestamp with every nanosecond digit set
T0_US = T0 // 1000 * 1000
A, B = "10.0.0.1", "10.0.0.2"
A6, B6 = "2001:db8::1", "2001:db8::2"
C, D = "192.168.7.1", "192.168.7.2"  # tenant addresses inside overlays
C6, D6 = "fd00::1", "fd00::2"


# ---------------------------------------------------------------- the synthetic traffic


def ip_packets() -> list[bytes]:
    """Bare IP packets: every transport, IPv4 options, IPv6 extension headers, v4 and v6 fragments."""
    syn_opts = tcp_options(mss=1460, sack_ok=True, timestamps=(1, 0), wscale=7)
    syn = tcp(A, B, 40000, 80, flags=SYN, seq=0xFFFFFFF0, window=29200, options=syn_opts)
    synack = tcp(B, A, 80, 40000, flags=SYN | ACK | ECE, seq=7, ack=0xFFFFFFF1, window=0)
    request = b"GET / HTTP/1.0\r\n\r\n"
    data = tcp(A, B, 40000, 80, flags=PSH | ACK | CWR | NS, seq=0xFFFFFFF1, ack=8, window=501, payload=request)
    quoted = ipv4(A, B, UDP, udp(A, B, 5000, 9999, b"abcdefgh"))[:28]  # IP header + 8 bytes
    ext6 = hop_by_hop(ROUTING) + routing_header(DSTOPTS, [B6]) + dest_options(TCP)
    fin6 = tcp(A6, B6, 40001, 443, flags=FIN | ACK, seq=5, ack=9, payload=b"x" * 10)
    big = tcp(A, B, 40002, 80, seq=10, ack=20, payload=bytes(range(256)) * 2)  # 532 bytes → 3 fragments
    frag6 = udp(A6, B6, 7000, 8000, b"z" * 100)
    return [
        ipv4(A, B, TCP, syn, ident=0x1234, df=True, ttl=63),
        ipv4(B, A, TCP, synack, ttl=128),
        ipv4(A, B, TCP, data, ident=2),
        ipv4(A, B, UDP, udp(A, B, 5000, 9999, b"hello"), options=router_alert(), tos=0x10, ident=3),
        ipv4(A, B, ICMP, icmp_echo(77, 1, b"ping"), ident=4),
        ipv4(B, A, ICMP, icmp_echo(77, 1, b"ping", reply=True), ident=5),
        ipv4(B, A, ICMP, icmp_unreachable(quoted), ident=6),
        ipv6(A6, B6, HOPOPTS, ext6 + fin6),
        ipv6(B6, A6, UDP, udp(B6, A6, 9999, 5000, b"reply"), hop_limit=255),
        ipv6(A6, B6, ICMPV6, icmpv6_echo(A6, B6, 99, 2, b"p6")),
        *ipv4_fragments(A, B, TCP, big, size=208, ident=999),
        ipv6(A6, B6, FRAGMENT, fragment_header(UDP, offset=0, more=True, ident=0xABCDEF) + frag6[:56]),
        ipv6(A6, B6, FRAGMENT, fragment_header(UDP, offset=56, more=False, ident=0xABCDEF) + frag6[56:]),
    ]


def ethertype_of(packet: bytes) -> int:
    return ETH_IPV4 if packet[0] >> 4 == 4 else ETH_IPV6


def ethernet_frames() -> list[bytes]:
    """Every IP packet in Ethernet, plus VLAN tags, QinQ, ARP, padding, VXLAN and Geneve."""
    frames = [ethernet(p, ethertype_of(p)) for p in ip_packets()]
    small = ipv4(A, B, UDP, udp(A, B, 41000, 41001, b"hi"), ident=7)
    syn6 = ipv6(A6, B6, TCP, tcp(A6, B6, 1, 2, flags=SYN))
    # VXLAN: an inner Ethernet frame (with its own VLAN tag) carrying TCP
    inner_tcp = ethernet(ipv4(C, D, TCP, tcp(C, D, 1111, 22, flags=SYN, seq=42)), vlans=[9])
    vxlan_udp = udp(A, B, 50000, VXLAN_PORT, vxlan(5001, inner_tcp))
    # Geneve with an option: an inner Ethernet frame carrying IPv6 UDP
    inner_udp6 = ethernet(ipv6(C6, D6, UDP, udp(C6, D6, 1234, 41002, b"q")), ETH_IPV6)
    option = geneve_option(0x0102, 3, b"abcd12")
    geneve_udp = udp(A, B, 50001, GENEVE_PORT, geneve(7007, inner_udp6, options=[option]))
    # Geneve over IPv6: a bare inner IPv4 packet (protocol type 0x0800)
    inner_icmp = ipv4(C, D, ICMP, icmp_echo(5, 6), ttl=1)
    geneve6_udp = udp(A6, B6, 50002, GENEVE_PORT, geneve(0xABCDEF, inner_icmp, protocol=ETH_IPV4))
    frames += [
        ethernet(small) + bytes(60 - 14 - len(small)),  # padded to the Ethernet minimum: trailer ignored
        ethernet(small, vlans=[100]),
        ethernet(syn6, ETH_IPV6, vlans=[100, 200], qinq=True),
        ethernet(small, vlans=[300, 400]),
        ethernet(arp_request(A, B), ETH_ARP),
        ethernet(ipv4(A, B, UDP, vxlan_udp)),
        ethernet(ipv4(A, B, UDP, geneve_udp), vlans=[42]),
        ethernet(ipv6(A6, B6, UDP, geneve6_udp), ETH_IPV6),
    ]
    return frames


def records(frames: list[bytes], *, truncate_last: int = 0, step_ns: int = 1_000_003) -> list[Record]:
    """Frames as records with increasing timestamps; optionally one more record cut to a snap length."""
    recs = [Record(f, ts_ns=T0 + i * step_ns) for i, f in enumerate(frames)]
    if truncate_last:
        full = frames[0]
        recs.append(Record(full[:truncate_last], ts_ns=T0 + len(frames) * step_ns, orig_len=len(full)))
    return recs


def frame_for(linktype: int, packet: bytes, *, big_endian: bool = False) -> bytes:
    """An IP packet framed for ``linktype`` (the NULL family in the byte order asked for)."""
    et = ethertype_of(packet)
    if linktype == LINKTYPE_ETHERNET:
        return ethernet(packet, et)
    if linktype == LINKTYPE_SLL:
        return sll(packet, et)
    if linktype == LINKTYPE_SLL2:
        return sll2(packet, et)
    if linktype == LINKTYPE_NULL:
        v6 = AF_INET6_DARWIN if big_endian else AF_INET6_BSD
        return null_loopback(packet, AF_INET if et == ETH_IPV4 else v6, big_endian=big_endian)
    assert linktype == LINKTYPE_RAW
    return packet


def link_frames(linktype: int, *, big_endian: bool = False) -> list[bytes]:
    """The IP packets under a non-Ethernet link type, plus an ARP frame where the link can carry one."""
    frames = [frame_for(linktype, p, big_endian=big_endian) for p in ip_packets()]
    if linktype == LINKTYPE_SLL:
        frames.append(sll(arp_request(A, B), ETH_ARP))
    elif linktype == LINKTYPE_SLL2:
        frames.append(sll2(arp_request(A, B), ETH_ARP))
    return frames


# ---------------------------------------------------------------- comparing with tshark

# fmt: off
FIELDS = (
    "frame.protocols", "frame.len", "frame.cap_len", "frame.time_epoch",
    "ieee8021ad.id", "vlan.id", "vxlan.vni", "geneve.vni",
    "ip.src", "ip.dst", "ip.proto", "ip.ttl", "ip.id", "ip.len", "ip.flags.mf", "ip.frag_offset",
    "ipv6.src", "ipv6.dst", "ipv6.hlim", "ipv6.plen",
    "ipv6.fraghdr.nxt", "ipv6.fraghdr.offset", "ipv6.fraghdr.more", "ipv6.fraghdr.ident",
    "tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.window_size_value", "tcp.len",
    "udp.srcport", "udp.dstport", "udp.length",
    "icmp.type", "icmp.code", "icmp.ident", "icmpv6.type", "icmpv6.code", "icmpv6.echo.identifier",
)
# fmt: on
NO_DEFRAG = ("-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE")
TRANSPORTS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}


def _num(v: str) -> int:
    return int(v, 16) if v.startswith("0x") else int(v)


def _flag(v: str) -> bool:
    return v in ("1", "True")


def epoch_ns(text: str) -> int:
    """tshark's ``frame.time_epoch`` (``s.fffffffff``) → integer nanoseconds, without float rounding."""
    sec, _, frac = text.partition(".")
    return int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])


def tshark_expected(row: dict[str, list[str]]) -> dict[str, object] | None:
    """What our reader should report for one tshark frame (None: not an IP packet).

    The decoded IP header is the first one, or the one inside VXLAN/Geneve; IP headers quoted
    in ICMP errors are not decoded. Field occurrences are picked by counting layers before it.
    """
    layers = row["frame.protocols"][0].split(":")
    ips = [i for i, name in enumerate(layers) if name in ("ip", "ipv6")]
    if not ips:
        return None
    tunnel = "vxlan" in layers or "geneve" in layers
    li = ips[1] if tunnel and len(ips) > 1 else ips[0]
    ipn = layers[li]
    k = layers[:li].count(ipn)
    after = [i for i in ips if i > li]
    upper = layers[li + 1 : after[0] if after else len(layers)]
    pre = layers[: ips[0]]

    def get(name: str, idx: int = k) -> str:
        return row[name][idx]

    exp: dict[str, object] = {
        "frame_len": _num(get("frame.len", 0)),
        "cap_len": _num(get("frame.cap_len", 0)),
    }
    if "ieee8021ad" in pre:
        exp["vlan"] = _num(get("ieee8021ad.id", 0))
    else:
        exp["vlan"] = _num(get("vlan.id", 0)) if "vlan" in pre else 0
    exp["vni"] = _num((row["vxlan.vni"] or row["geneve.vni"])[0]) if tunnel else 0
    if ipn == "ip":
        off, mf = _num(get("ip.frag_offset")), _flag(get("ip.flags.mf"))
        exp.update(
            ip_version=4,
            src_ip=get("ip.src"),
            dst_ip=get("ip.dst"),
            proto=_num(get("ip.proto")),
            ttl=_num(get("ip.ttl")),
            ip_id=_num(get("ip.id")),
            ip_len=_num(get("ip.len")),
            frag=2 if off else int(mf),
        )
    else:
        exp.update(
            ip_version=6,
            src_ip=get("ipv6.src"),
            dst_ip=get("ipv6.dst"),
            ttl=_num(get("ipv6.hlim")),
            ip_len=40 + _num(get("ipv6.plen")),
            ip_id=0,
            frag=0,
        )
        if "ipv6.fraghdr" in upper:
            j = layers[:li].count("ipv6.fraghdr")
            off, more = _num(get("ipv6.fraghdr.offset", j)), _flag(get("ipv6.fraghdr.more", j))
            exp.update(
                ip_id=_num(get("ipv6.fraghdr.ident", j)),
                frag=2 if off else int(more),
                proto=_num(get("ipv6.fraghdr.nxt", j)),
            )
    transport = next((name for name in upper if name in TRANSPORTS), None)
    exp.update(src_port=0, dst_port=0)
    if transport is None:
        return exp
    # Our payload_len counts this packet's bytes; tshark's tcp.len / udp.length describe the whole
    # (reassembled) segment, so they only compare outside fragments.
    whole = exp["frag"] == 0
    exp["proto"] = TRANSPORTS[transport]
    t = layers[: li + 1 + upper.index(transport)].count(transport)
    if transport == "tcp":
        exp.update(
            src_port=_num(get("tcp.srcport", t)),
            dst_port=_num(get("tcp.dstport", t)),
            tcp_flags=_num(get("tcp.flags", t)),
            tcp_seq=_num(get("tcp.seq_raw", t)),
            tcp_ack=_num(get("tcp.ack_raw", t)),
            tcp_win=_num(get("tcp.window_size_value", t)),
        )
        if whole:
            exp["payload_len"] = _num(get("tcp.len", t))
    elif transport == "udp":
        exp.update(src_port=_num(get("udp.srcport", t)), dst_port=_num(get("udp.dstport", t)))
        if whole:
            exp["payload_len"] = _num(get("udp.length", t)) - 8
    elif transport == "icmp":
        typ = _num(get("icmp.type", t))
        exp.update(icmp_type=typ, icmp_code=_num(get("icmp.code", t)))
        if typ in (0, 8):
            exp["src_port"] = exp["dst_port"] = _num(get("icmp.ident", t))
    else:
        typ = _num(get("icmpv6.type", t))
        exp.update(icmp_type=typ, icmp_code=_num(get("icmpv6.code", t)))
        if typ in (128, 129):
            exp["src_port"] = exp["dst_port"] = _num(get("icmpv6.echo.identifier", t))
    return exp


def table_rows(table: pa.Table) -> list[dict[str, object]]:
    """Packet table → list of dicts with addresses rendered as text."""
    rows = table.to_pylist()
    for col in ("src_ip", "dst_ip"):
        for row, text in zip(rows, ip_text(table[col]), strict=True):
            row[col] = text
    return rows


def assert_matches_tshark(
    path: Path, table: pa.Table, stats: CaptureStats, tshark: Tshark, *, fields: tuple[str, ...] = FIELDS
) -> int:
    """Every kept packet equals tshark's view of its frame; non-IP frames are the ones we counted.

    Returns the number of IP packets compared.
    """
    rows = tshark(path, fields, *NO_DEFRAG)
    assert len(rows) == stats.records
    expected = [(n, e, r) for n, r in enumerate(rows, 1) if (e := tshark_expected(r)) is not None]
    assert stats.non_ip == len(rows) - len(expected)
    assert stats.malformed == stats.unsupported_linktype == 0
    ours = table_rows(table)
    assert len(ours) == len(expected)
    for (frame, exp, row), got in zip(expected, ours, strict=True):
        assert {key: got[key] for key in exp} == exp, f"{path.name} frame {frame}"
        if row["frame.time_epoch"]:  # pcapng simple packet blocks carry no timestamp
            assert abs(got["ts_ns"] - epoch_ns(row["frame.time_epoch"][0])) <= 1000, f"{path.name} frame {frame}"
    return len(expected)


# ---------------------------------------------------------------- the builder itself


@needs_tshark
def test_builder_output_is_clean_for_tshark(tmp_path: Path, tshark: Tshark) -> None:
    """Checksums verified by tshark are good and no frame raises a warning or error."""
    path = write_pcap(tmp_path / "all.pcap", records(ethernet_frames()))
    checks = ("ip", "tcp", "udp")
    opts = [x for name in checks for x in ("-o", f"{name}.check_checksum:TRUE")]
    statuses = [f"{n}.checksum.status" for n in (*checks, "icmp", "icmpv6")]
    rows = tshark(path, ("_ws.expert.severity", "frame.protocols", *statuses), *opts, *NO_DEFRAG)
    assert len(rows) == len(ethernet_frames())
    for n, row in enumerate(rows, 1):
        assert all(_num(s) < 0x600000 for s in row["_ws.expert.severity"]), f"frame {n}: {row}"
        for name in statuses:  # 0 bad, 1 good, 2 not verified (headers quoted in an ICMP error)
            assert "0" not in row[name], f"frame {n}: bad {name}"
    # at least one of each verified checksum kind was checked
    assert all(any(row[name][:1] == ["1"] for row in rows) for name in statuses)


def test_builder_timestamp_units_round_trip() -> None:
    for res in (None, 3, 6, 9, 0x80 | 20):
        ns = units_ns(ts_units(T0, res), res)
        step = 10**9 // 2**20 + 1 if res == 0x80 | 20 else 10 ** (9 - (6 if res is None else res))
        assert 0 <= T0 - ns < step


# ---------------------------------------------------------------- known answers (no tshark)


def one_packet(tmp_path: Path, read_capture: ReadCapture, frame: bytes, linktype: int = LINKTYPE_ETHERNET) -> dict:
    table, stats = read_capture(write_pcap(tmp_path / "one.pcap", [Record(frame, T0)], linktype))
    assert stats.packets == table.num_rows == 1, stats.problems()
    return table_rows(table)[0]


def test_ipv6_extension_headers_are_skipped(tmp_path: Path, read_capture: ReadCapture) -> None:
    """TCP behind hop-by-hop + routing + destination options: ports and lengths from the TCP header."""
    seg = tcp(A6, B6, 40001, 443, flags=PSH | ACK, seq=5, ack=9, window=77, payload=b"x" * 10)
    ext = hop_by_hop(ROUTING, bytes([5, 2, 0, 0])) + routing_header(DSTOPTS, [B6]) + dest_options(TCP)
    frame = ethernet(ipv6(A6, B6, HOPOPTS, ext + seg, hop_limit=3), ETH_IPV6)
    row = one_packet(tmp_path, read_capture, frame)
    assert (row["ip_version"], row["src_ip"], row["dst_ip"], row["proto"]) == (6, A6, B6, TCP)
    tcp_fields = [row[k] for k in ("src_port", "dst_port", "tcp_seq", "tcp_ack", "tcp_win")]
    assert tcp_fields == [40001, 443, 5, 9, 77]
    sizes = [row[k] for k in ("ip_len", "payload_len", "ttl", "frag")]
    assert sizes == [40 + len(ext) + len(seg), 10, 3, 0]


def test_vlan_tags_keep_the_outer_id(tmp_path: Path, read_capture: ReadCapture) -> None:
    pkt = ipv4(A, B, UDP, udp(A, B, 1, 2))
    frames = [
        ethernet(pkt, vlans=[100]),
        ethernet(pkt, vlans=[100, 200], qinq=True),
        ethernet(pkt, vlans=[300, 400]),
        ethernet(pkt),
    ]
    table, _ = read_capture(write_pcap(tmp_path / "vlan.pcap", records(frames)))
    assert table["vlan"].to_pylist() == [100, 100, 300, 0]
    assert table["src_port"].to_pylist() == [1, 1, 1, 1]


def test_overlays_report_inner_headers_and_vni(tmp_path: Path, read_capture: ReadCapture) -> None:
    frames = ethernet_frames()[-3:]  # VXLAN, Geneve (options, inner IPv6), Geneve over IPv6 (bare inner IPv4)
    table, stats = read_capture(write_pcap(tmp_path / "overlay.pcap", records(frames)))
    rows = table_rows(table)
    got = [(r["vni"], r["vlan"], r["src_ip"], r["dst_ip"], r["proto"], r["src_port"], r["dst_port"]) for r in rows]
    assert got == [
        (5001, 0, C, D, TCP, 1111, 22),  # the inner frame's VLAN tag is not the outer one
        (7007, 42, C6, D6, UDP, 1234, 41002),
        (0xABCDEF, 0, C, D, ICMP, 5, 5),
    ]
    assert rows[2]["ttl"] == 1 and rows[0]["tcp_flags"] == SYN and stats.non_ip == 0


def test_tcp_and_icmp_fields(tmp_path: Path, read_capture: ReadCapture) -> None:
    table, _ = read_capture(write_pcap(tmp_path / "t.pcap", records(ethernet_frames()[:10])))
    rows = table_rows(table)
    tcp_rows = [
        (r["tcp_flags"], r["tcp_seq"], r["tcp_ack"], r["tcp_win"], r["payload_len"], r["ttl"], r["ip_id"])
        for r in rows[:3]
    ]
    assert tcp_rows == [
        (SYN, 0xFFFFFFF0, 0, 29200, 0, 63, 0x1234),
        (SYN | ACK | ECE, 7, 0xFFFFFFF1, 0, 0, 128, 0),
        (PSH | ACK | CWR | NS, 0xFFFFFFF1, 8, 501, 18, 64, 2),
    ]
    assert [rows[3][k] for k in ("proto", "src_port", "payload_len", "ip_len")] == [UDP, 5000, 5, 37]
    icmp = [(r["proto"], r["icmp_type"], r["icmp_code"], r["src_port"], r["dst_port"]) for r in rows[4:7]]
    assert icmp == [(ICMP, 8, 0, 77, 77), (ICMP, 0, 0, 77, 77), (ICMP, 3, 3, 0, 0)]
    assert (rows[9]["proto"], rows[9]["icmp_type"], rows[9]["src_port"]) == (ICMPV6, 128, 99)


LINK_VARIANTS = {
    "sll": (LINKTYPE_SLL, False),
    "sll2": (LINKTYPE_SLL2, False),
    "raw": (LINKTYPE_RAW, False),
    "null-le": (LINKTYPE_NULL, False),
    "null-be": (LINKTYPE_NULL, True),
}
# fmt: off
IP_COLUMNS = [
    "ip_version", "src_ip", "dst_ip", "proto", "src_port", "dst_port", "ip_len", "payload_len", "ttl", "ip_id",
    "frag", "tcp_flags", "tcp_seq", "tcp_ack", "tcp_win", "icmp_type", "icmp_code", "pkt_hash", "ts_ns",
]
# fmt: on


def test_link_types_decode_the_same_packets(tmp_path: Path, read_capture: ReadCapture) -> None:
    """The same IP packets under every link type decode to identical IP-level columns."""
    eth = [frame_for(LINKTYPE_ETHERNET, p) for p in ip_packets()]
    base, _ = read_capture(write_pcap(tmp_path / "eth.pcap", records(eth)))
    for name, (lt, be) in LINK_VARIANTS.items():
        frames = link_frames(lt, big_endian=be)
        path = write_pcap(tmp_path / f"{name}.pcap", records(frames), lt, big_endian=be)
        table, stats = read_capture(path)
        assert table.select(IP_COLUMNS).equals(base.select(IP_COLUMNS)), name
        assert stats.linktypes == {lt} and stats.non_ip == (lt in (LINKTYPE_SLL, LINKTYPE_SLL2)), name


@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
@pytest.mark.parametrize("nanosecond", [False, True], ids=["us", "ns"])
def test_pcap_timestamps(tmp_path: Path, read_capture: ReadCapture, big_endian: bool, nanosecond: bool) -> None:
    recs = records(ethernet_frames())
    path = write_pcap(tmp_path / "ts.pcap", recs, big_endian=big_endian, nanosecond=nanosecond)
    table, stats = read_capture(path)
    kept = [r for r in recs if r.data[12:14] != b"\x08\x06"]  # all but the ARP frame
    assert table["ts_ns"].to_pylist() == [pcap_timestamp_ns(r.ts_ns, nanosecond=nanosecond) for r in kept]
    assert stats.first_ts_ns == pcap_timestamp_ns(T0, nanosecond=nanosecond)
    assert (stats.format, stats.records, stats.non_ip) == ("pcap", len(recs), 1)


PCAPNG_IFACES = [
    Interface(LINKTYPE_ETHERNET),  # if_tsresol absent: microseconds
    Interface(LINKTYPE_SLL2, tsresol=9),
    Interface(LINKTYPE_RAW, tsresol=0x80 | 20),  # 2^-20 s
    Interface(LINKTYPE_NULL, tsresol=3),
    Interface(LINKTYPE_SLL, tsresol=7),
]


def pcapng_records() -> list[Record]:
    """Each IP packet framed for one interface, interfaces taken in turn."""
    out = []
    for i, p in enumerate(ip_packets()):
        iface = i % len(PCAPNG_IFACES)
        frame = frame_for(PCAPNG_IFACES[iface].linktype, p)
        out.append(Record(frame, ts_ns=T0 + i * 1_234_567, iface=iface))
    return out


def write_multi_pcapng(path: Path, *, big_endian: bool = False) -> Path:
    simple = [ethernet(ipv4(A, B, UDP, udp(A, B, 6000, 6001, b"spb")))]
    return write_pcapng(path, PCAPNG_IFACES, pcapng_records(), simple=simple, big_endian=big_endian)


@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
def test_pcapng_interfaces_and_resolutions(tmp_path: Path, read_capture: ReadCapture, big_endian: bool) -> None:
    """Each packet is decoded with its interface's link type and timestamped in its resolution."""
    recs = pcapng_records()
    table, stats = read_capture(write_multi_pcapng(tmp_path / "multi.pcapng", big_endian=big_endian))
    assert (stats.format, stats.records, stats.packets) == ("pcapng", len(recs) + 1, len(recs) + 1)
    assert stats.linktypes == {i.linktype for i in PCAPNG_IFACES}
    base, _ = read_capture(write_pcap(tmp_path / "raw.pcap", records(ip_packets()), LINKTYPE_RAW))
    cols = [c for c in IP_COLUMNS if c != "ts_ns"]
    assert table.slice(0, len(recs)).select(cols).equals(base.select(cols))
    for r, got in zip(recs, table["ts_ns"].to_pylist()[: len(recs)], strict=True):
        res = PCAPNG_IFACES[r.iface].tsresol
        want = units_ns(ts_units(r.ts_ns, res), res)
        assert abs(got - want) <= (1000 if res == 0x80 | 20 else 0), (r.iface, got, want)
    spb = table_rows(table)[-1]  # the simple packet block: interface 0 (Ethernet), no timestamp
    assert (spb["ts_ns"], spb["src_port"], spb["dst_port"]) == (0, 6000, 6001)


def two_section_pcapng(path: Path) -> Path:
    """A little-endian section (interfaces 0-1) followed by a big-endian one (the others, renumbered)."""
    recs = pcapng_records()
    first = [r for r in recs if r.iface < 2]
    second = [Record(r.data, r.ts_ns, iface=r.iface - 2) for r in recs if r.iface >= 2]
    data = pcapng_bytes(PCAPNG_IFACES[:2], first) + pcapng_bytes(PCAPNG_IFACES[2:], second, big_endian=True)
    path.write_bytes(data)
    return path


def test_pcapng_sections_of_both_byte_orders(tmp_path: Path, read_capture: ReadCapture) -> None:
    """A second section header resets the interfaces and may switch byte order."""
    table, stats = read_capture(two_section_pcapng(tmp_path / "two.pcapng"))
    assert stats.packets == len(ip_packets()) and stats.problems() == []
    assert stats.linktypes == {i.linktype for i in PCAPNG_IFACES}
    ports = sorted(zip(table["src_port"].to_pylist(), table["dst_port"].to_pylist(), strict=True))
    base, _ = read_capture(write_pcap(tmp_path / "raw.pcap", records(ip_packets()), LINKTYPE_RAW))
    assert ports == sorted(zip(base["src_port"].to_pylist(), base["dst_port"].to_pylist(), strict=True))


def test_undecodable_overlays_keep_the_outer_packet(tmp_path: Path, read_capture: ReadCapture) -> None:
    """VXLAN without its I flag, a too-short VXLAN header, or Geneve carrying neither Ethernet nor IP:
    the outer UDP packet is reported, with VNI 0."""
    inner = ipv4(C, D, UDP, udp(C, D, 1, 2))
    frames = [
        ethernet(ipv4(A, B, UDP, udp(A, B, 9, VXLAN_PORT, bytes(8) + ethernet(inner)))),
        ethernet(ipv4(A, B, UDP, udp(A, B, 9, VXLAN_PORT, b"\x08\x00\x00"))),
        ethernet(ipv4(A, B, UDP, udp(A, B, 9, GENEVE_PORT, geneve(5, inner, protocol=0x88CC)))),
    ]
    table, stats = read_capture(write_pcap(tmp_path / "outer.pcap", records(frames)))
    rows = table_rows(table)
    assert [(r["vni"], r["src_ip"], r["dst_port"]) for r in rows] == [
        (0, A, VXLAN_PORT),
        (0, A, VXLAN_PORT),
        (0, A, GENEVE_PORT),
    ]
    assert stats.malformed == 0


# ---------------------------------------------------------------- against tshark

PCAP_VARIANTS = {
    "eth-le-us": (LINKTYPE_ETHERNET, False, False),
    "eth-be-us": (LINKTYPE_ETHERNET, True, False),
    "eth-le-ns": (LINKTYPE_ETHERNET, False, True),
    "eth-be-ns": (LINKTYPE_ETHERNET, True, True),
    "sll": (LINKTYPE_SLL, False, False),
    "sll2": (LINKTYPE_SLL2, False, True),
    "raw": (LINKTYPE_RAW, True, False),
    "null-le": (LINKTYPE_NULL, False, False),
    "null-be": (LINKTYPE_NULL, True, True),
}


@needs_tshark
@pytest.mark.parametrize("variant", list(PCAP_VARIANTS))
def test_pcap_matches_tshark(tmp_path: Path, read_capture: ReadCapture, tshark: Tshark, variant: str) -> None:
    lt, be, ns = PCAP_VARIANTS[variant]
    frames = ethernet_frames() if lt == LINKTYPE_ETHERNET else link_frames(lt, big_endian=be)
    recs = records(frames, truncate_last=54 if lt == LINKTYPE_ETHERNET else 0)  # + one snaplen-cut frame
    path = write_pcap(tmp_path / f"{variant}.pcap", recs, lt, big_endian=be, nanosecond=ns)
    table, stats = read_capture(path)
    assert stats.linktypes == {lt}
    assert assert_matches_tshark(path, table, stats, tshark) == stats.packets > 10


@needs_tshark
@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
def test_pcapng_matches_tshark(tmp_path: Path, read_capture: ReadCapture, tshark: Tshark, big_endian: bool) -> None:
    path = write_multi_pcapng(tmp_path / "multi.pcapng", big_endian=big_endian)
    table, stats = read_capture(path)
    assert assert_matches_tshark(path, table, stats, tshark) == stats.packets == len(ip_packets()) + 1
    ifaces = [_num(r["frame.interface_id"][0]) for r in tshark(path, ("frame.interface_id",))]
    assert ifaces == [r.iface for r in pcapng_records()] + [0]


@needs_tshark
def test_two_section_pcapng_matches_tshark(tmp_path: Path, read_capture: ReadCapture, tshark: Tshark) -> None:
    path = two_section_pcapng(tmp_path / "two.pcapng")
    table, stats = read_capture(path)
    assert assert_matches_tshark(path, table, stats, tshark) == stats.packets == len(ip_packets())


# ---------------------------------------------------------------- fragments


def fragment_frames() -> list[bytes]:
    """IPv4 TCP in 3 fragments (one out of order), IPv6 UDP in 2, and an unfragmented packet."""
    seg = tcp(A, B, 40002, 80, seq=10, payload=bytes(range(256)) * 2)
    v4 = ipv4_fragments(A, B, TCP, seg, size=208, ident=999)
    udp6 = udp(A6, B6, 7000, 8000, b"z" * 100)
    v6 = [
        ipv6(A6, B6, FRAGMENT, fragment_header(UDP, offset=56, more=False, ident=0xABCDEF) + udp6[56:]),
        ipv6(A6, B6, FRAGMENT, fragment_header(UDP, offset=0, more=True, ident=0xABCDEF) + udp6[:56]),
    ]
    whole = ipv4(A, B, UDP, udp(A, B, 1, 2), df=True)
    return [ethernet(p, ethertype_of(p)) for p in (v4[0], v4[2], v4[1], *v6, whole)]


def test_fragments(tmp_path: Path, read_capture: ReadCapture) -> None:
    """First fragments keep their ports; later fragments have ``frag == 2`` and no ports."""
    table, stats = read_capture(write_pcap(tmp_path / "frag.pcap", records(fragment_frames())))
    got = [(r["frag"], r["proto"], r["src_port"], r["dst_port"], r["ip_id"], r["tcp_seq"]) for r in table_rows(table)]
    assert got == [
        (1, TCP, 40002, 80, 999, 10),
        (2, TCP, 0, 0, 999, 0),
        (2, TCP, 0, 0, 999, 0),
        (2, UDP, 0, 0, 0xABCDEF, 0),
        (1, UDP, 7000, 8000, 0xABCDEF, 0),
        (0, UDP, 1, 2, 0, 0),
    ]
    assert table["payload_len"].to_pylist() == [208 - 20, 532 - 416, 208, 108 - 56, 56 - 8, 0]
    assert stats.fragments == 5 and stats.packets == 6


@needs_tshark
def test_fragments_match_tshark(tmp_path: Path, read_capture: ReadCapture, tshark: Tshark) -> None:
    path = write_pcap(tmp_path / "frag.pcap", records(fragment_frames()))
    table, stats = read_capture(path)
    assert assert_matches_tshark(path, table, stats, tshark) == 6


# ---------------------------------------------------------------- chunked reading


def many_records(n: int = 400) -> list[Record]:
    """Records of many sizes (so they straddle chunk boundaries) and one larger than the buffer."""
    out = []
    for i in range(n):
        pkt = ipv4(A, B, UDP, udp(A, B, 1000 + i, 53000, bytes(i * 37 % 1400)), ident=i)
        out.append(Record(ethernet(pkt), ts_ns=T0_US + i * 1000))
    huge = ethernet(ipv4(A, B, TCP, tcp(A, B, 1, 2, payload=bytes(1000)))) + bytes(150_000)  # 150 kB > 64 KiB
    out.insert(n // 2, Record(huge, ts_ns=T0_US + n // 2 * 1000))
    return out


@pytest.mark.parametrize("fmt", ["pcap", "pcapng", "pcap.gz"])
def test_chunking_gives_identical_tables(tmp_path: Path, read_capture: ReadCapture, fmt: str) -> None:
    recs = many_records()
    path = tmp_path / f"many.{fmt}"
    if fmt == "pcapng":
        write_pcapng(path, [Interface(LINKTYPE_ETHERNET, tsresol=9)], recs)
    else:
        write_pcap(tmp_path / "many.pcap", recs)
        if fmt == "pcap.gz":
            path.write_bytes(gzip.compress((tmp_path / "many.pcap").read_bytes()))
    whole, st1 = read_capture(path)
    small, st2 = read_capture(path, chunk_bytes=4096, batch_records=7)
    assert whole.num_rows == len(recs) and small.equals(whole)
    assert st1.as_dict() == st2.as_dict()
    assert 150_000 + 1054 in whole["frame_len"].to_pylist()
    assert whole["src_port"].to_pylist()[:3] == [1000, 1001, 1002]
    assert whole["ts_ns"].to_pylist() == [r.ts_ns for r in recs]


# ---------------------------------------------------------------- the shared real traces

REAL_FIELDS = ("frame.protocols", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst")
DETAILED = ("zeek/traces/tcp/ssh-dups.pcap", "chrissanders/tcp_ports.pcapng")


def outer_ip(row: dict[str, list[str]]) -> str:
    """``ip`` or ``ipv6``: the outermost IP layer of a tshark frame."""
    return next(n for n in row["frame.protocols"][0].split(":") if n in ("ip", "ipv6"))


@pytest.mark.shared
@needs_tshark
def test_real_trace_counts(shared_data: Path, tshark: Tshark, read_capture: ReadCapture, real_trace: str) -> None:
    """Kept + non-IP packets = tshark's frames; kept = tshark's ``ip || ipv6`` frames; addresses agree."""
    table, stats = read_capture(shared_data / real_trace)
    rows = tshark(shared_data / real_trace, REAL_FIELDS, *NO_DEFRAG)
    ip_rows = [r for r in rows if {"ip", "ipv6"} & set(r["frame.protocols"][0].split(":"))]
    assert stats.problems() == []
    assert stats.packets + stats.non_ip == len(rows)
    assert stats.packets == table.num_rows == len(ip_rows)
    protocols = " ".join(r["frame.protocols"][0] for r in ip_rows)
    if "vxlan" not in protocols and "geneve" not in protocols:  # else we report the inner addresses
        assert list(ip_text(table["src_ip"])) == [r[f"{outer_ip(r)}.src"][0] for r in ip_rows]
        assert list(ip_text(table["dst_ip"])) == [r[f"{outer_ip(r)}.dst"][0] for r in ip_rows]


@pytest.mark.shared
@needs_tshark
@pytest.mark.parametrize("name", DETAILED)
def test_real_trace_packets_match_tshark(
    shared_data: Path, read_capture: ReadCapture, tshark: Tshark, name: str
) -> None:
    """Every header field of every packet, as tshark decodes it."""
    path = shared_data / name
    if not path.exists():
        pytest.skip(f"{name} is not among the shared captures")
    table, stats = read_capture(path)
    assert assert_matches_tshark(path, table, stats, tshark) == stats.packets > 300
