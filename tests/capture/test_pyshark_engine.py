"""The pyshark cross-check engine gives the same packet and ARP tables as the fast reader."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import psutil
import pyarrow as pa
import pytest

from netsentry.pipeline.capture.pyshark_reader import read_capture_pyshark, read_packets_pyshark
from netsentry.pipeline.capture.reader import read_capture
from netsentry.pipeline.capture.tenants import tenant_map_from_dict
from netsentry.pipeline.core.errors import CaptureFormatError, InputNotFoundError, ToolMissingError
from netsentry.pipeline.core.schemas import ARP, PACKETS
from tests import pcapbuild as pb
from tests.capture.test_arp import arp_frames
from tests.conftest import read_tables
from tests.paths import SHARED_DATA

REAL_TRACES = ["zeek/traces/tcp/ssh-dups.pcap", "chrissanders/tcp_ports.pcapng", "zeek/traces/wikipedia.pcap"]
STATS_FIELDS = ("format", "records", "packets", "bytes", "non_ip", "arp", "malformed", "fragments", "linktypes",
                "first_ts_ns", "last_ts_ns")  # fmt: skip

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")


def _assert_same_rows(path: Path, fast: pa.Table, slow: pa.Table, schema: pa.Schema) -> None:
    assert slow.schema == fast.schema == schema
    assert slow.num_rows == fast.num_rows, f"{path.name}: {slow.num_rows} rows (pyshark) vs {fast.num_rows}"
    for name in schema.names:
        a, b = fast[name].to_pylist(), slow[name].to_pylist()
        bad = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if bad:
            i = bad[0]
            pytest.fail(f"{path.name}: column {name} differs in {len(bad)} rows; row {i}: {a[i]!r}, {b[i]!r}")


def assert_same_packets(path: Path, **kw) -> pa.Table:
    """Both engines read ``path``: same schemas, same packet and ARP rows in the same order, same counts."""
    return assert_same_capture(path, **kw)[0]


def assert_same_capture(path: Path, **kw) -> tuple[pa.Table, pa.Table]:
    """:func:`assert_same_packets`, returning the pyshark engine's packet and ARP tables."""
    fast, fast_arp, fast_stats = read_tables(read_capture, path)
    slow, slow_arp, slow_stats = read_tables(read_capture_pyshark, path, **kw)
    _assert_same_rows(path, fast, slow, PACKETS)
    _assert_same_rows(path, fast_arp, slow_arp, ARP)
    for f in STATS_FIELDS:
        assert getattr(slow_stats, f) == getattr(fast_stats, f), f"{path.name}: stats.{f}"
    return slow, slow_arp


@needs_tshark
@pytest.mark.shared
@pytest.mark.parametrize("name", REAL_TRACES)
def test_real_trace_same_as_fast_reader(name: str) -> None:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"shared capture {path} not found (expected <repo>/../shared/data)")
    table = assert_same_packets(path, batch_size=128)  # several batches
    assert table.num_rows > 100


A, B, A6, B6 = "10.0.0.1", "10.0.0.2", "2001:db8::1", "2001:db8::2"


def _v4(proto: int, payload: bytes, src: str = A, dst: str = B, vlans: tuple | list = (), **kw) -> bytes:
    return pb.ethernet(pb.ipv4(src, dst, proto, payload, **kw), vlans=vlans)


def _v6(next_header: int, payload: bytes) -> bytes:
    return pb.ethernet(pb.ipv6(A6, B6, next_header, payload), pb.ETH_IPV6)


def _overlay_and_edge_frames() -> list[pb.Record]:
    """VLAN/QinQ, VXLAN, Geneve (options, inner IPv6, over IPv6), fragments, IPv6 extension headers,
    ICMP echo/errors, IP options, GRE, NS flag, ARP, and frames cut short by the snap length."""
    syn_ack = pb.tcp(A, B, 40000, 80, seq=4_000_000_000, ack=7, flags=pb.SYN | pb.ACK | pb.NS,
                     options=pb.tcp_options(mss=1460, wscale=7), payload=b"x" * 10)  # fmt: skip
    c1, c2, c3 = "192.168.0.1", "192.168.0.2", "172.16.0.1"
    vx_inner = pb.ethernet(pb.ipv4(c1, c2, pb.TCP, pb.tcp(c1, c2, 1, 2, flags=pb.SYN), ttl=9), vlans=[77])
    vx = pb.udp(c3, B, 50000, pb.VXLAN_PORT, pb.vxlan(5001, vx_inner))
    gn_inner = pb.ipv6("fd00::1", "fd00::2", pb.UDP, pb.udp("fd00::1", "fd00::2", 11, 12, b"g"))
    gn_opt = pb.geneve_option(0x0102, 0x80, b"abcd")
    gn = pb.geneve(7002, gn_inner, protocol=pb.ETH_IPV6, options=[gn_opt])
    gn = pb.udp(c3, B, 50001, pb.GENEVE_PORT, gn)
    gn6_inner = pb.ethernet(pb.ipv4(c1, c2, pb.ICMP, pb.icmp_echo(3, 4)))
    gn6 = pb.udp(A6, B6, 50002, pb.GENEVE_PORT, pb.geneve(7002, gn6_inner))
    quoted = pb.ipv4(B, A, pb.UDP, pb.udp(B, A, 3, 53, b"z"))[:28]
    seg6 = pb.udp(A6, B6, 9, 10, b"u" * 20)
    frag6 = [pb.fragment_header(pb.UDP, offset=0, more=True, ident=0xABCDEF) + seg6[:16],
             pb.fragment_header(pb.UDP, offset=16, more=False, ident=0xABCDEF) + seg6[16:]]  # fmt: skip
    frag4 = pb.ipv4_fragments(A, B, pb.UDP, pb.udp(A, B, 7, 8, b"f" * 40), size=16, ident=9)
    gre = b"\x00\x00\x08\x00" + pb.ipv4(B, A, pb.UDP, pb.udp(B, A, 1, 1))
    frames = [
        _v4(pb.TCP, syn_ack, ident=7, df=True),
        _v4(pb.UDP, pb.udp(A, B, 5353, 53, b"q" * 30), vlans=[100, 200]),
        pb.ethernet(pb.ipv4(A, B, pb.UDP, pb.udp(A, B, 1, 2, b"q")), vlans=[10, 20], qinq=True),
        _v4(pb.ICMP, pb.icmp_echo(0x1234, 9, b"p" * 16)),
        _v4(pb.ICMP, pb.icmp_unreachable(quoted)),
        _v4(pb.UDP, pb.udp(A, B, 4444, 5555, b"r" * 9), options=pb.router_alert()),
        *(pb.ethernet(f) for f in frag4),
        _v4(pb.UDP, vx, src=c3, vlans=[300]),
        _v4(pb.UDP, gn, src=c3),
        _v6(pb.UDP, gn6),
        _v6(pb.TCP, pb.tcp(A6, B6, 443, 50000, seq=1, ack=2, flags=pb.FIN | pb.ACK, payload=b"t" * 5)),
        _v6(pb.ICMPV6, pb.icmpv6_echo(A6, B6, 0x4321, 1, b"e" * 8, reply=True)),
        _v6(pb.HOPOPTS, pb.hop_by_hop(pb.DSTOPTS) + pb.dest_options(pb.UDP) + seg6),
        _v6(pb.ROUTING, pb.routing_header(pb.TCP, ["2001:db8::9", B6]) + pb.tcp(A6, B6, 1, 2)),
        *(_v6(pb.FRAGMENT, f) for f in frag6),
        _v6(pb.NO_NEXT, b""),
        _v4(47, gre),  # GRE: kept as the outer packet, not decapsulated
        pb.ethernet(pb.arp_request(A, B), pb.ETH_ARP),
    ]
    t0 = 1_700_000_000_123_456_789
    recs = [pb.Record(f, ts_ns=t0 + i * 1_000_003) for i, f in enumerate(frames)]
    full = _v4(pb.TCP, pb.tcp(A, B, 1, 2, payload=b"y" * 100))
    for cut in (14 + 10, 14 + 30, 14 + 40):  # snap length inside the IP header, the TCP header, after it
        recs.append(pb.Record(full[:cut], ts_ns=t0 + 10**11 + cut, orig_len=len(full)))
    return recs


@needs_tshark
def test_overlays_and_edge_cases_same_as_fast_reader(tmp_path: Path) -> None:
    path = pb.write_pcap(tmp_path / "edge.pcap", _overlay_and_edge_frames(), nanosecond=True)
    table = assert_same_packets(path)
    assert table.num_rows == 21  # 24 frames less ARP and two cut inside their IP/TCP headers
    assert set(table["vni"].to_pylist()) == {0, 5001, 7002}
    assert {300, 100, 10} <= set(table["vlan"].to_pylist())


@needs_tshark
def test_arp_frames_same_as_fast_reader(tmp_path: Path) -> None:
    path = pb.write_pcap(tmp_path / "arp.pcap", [pb.Record(f, ts_ns=10**18 + i) for i, f in enumerate(arp_frames())])
    packets, arp = assert_same_capture(path, batch_size=4)  # several batches
    assert (packets.num_rows, arp.num_rows) == (1, 6)


@needs_tshark
@pytest.mark.shared
def test_real_arp_scan_same_as_fast_reader() -> None:
    path = SHARED_DATA / "open" / "sgr-favilli" / "hs-arpScan.pcap"
    if not path.is_file():
        pytest.skip(f"shared capture {path} not found (expected <repo>/../shared/data)")
    assert assert_same_capture(path)[1].num_rows == 509


@needs_tshark
@pytest.mark.parametrize(
    ("linktype", "frame"),
    [
        (pb.LINKTYPE_SLL, pb.sll(pb.ipv4(A, B, pb.UDP, pb.udp(A, B, 1, 2)))),
        (pb.LINKTYPE_SLL2, pb.sll2(pb.ipv6("::1", "::2", pb.UDP, pb.udp("::1", "::2", 1, 2)), pb.ETH_IPV6)),
        (pb.LINKTYPE_NULL, pb.null_loopback(pb.ipv4(A, B, pb.ICMP, pb.icmp_echo(5, 6)))),
        (pb.LINKTYPE_RAW, pb.ipv6("::1", "::2", pb.TCP, pb.tcp("::1", "::2", 3, 4, flags=pb.RST))),
        (pb.LINKTYPE_SLL, pb.sll(pb.arp_request(A, B), pb.ETH_ARP)),
        (pb.LINKTYPE_SLL2, pb.sll2(pb.arp_reply(B, A, sender_mac=pb.MAC_B, target_mac=pb.MAC_A), pb.ETH_ARP)),
    ],
)
def test_link_types_same_as_fast_reader(tmp_path: Path, linktype: int, frame: bytes) -> None:
    path = pb.write_pcap(tmp_path / "lt.pcap", [pb.Record(frame, ts_ns=10**18)], linktype=linktype)
    packets, arp = assert_same_capture(path)
    assert packets.num_rows + arp.num_rows == 1


@needs_tshark
@pytest.mark.shared
def test_gzipped_capture(tmp_path: Path) -> None:
    src = SHARED_DATA / "zeek/traces/wikipedia.pcap"
    if not src.is_file():
        pytest.skip(f"shared capture {src} not found (expected <repo>/../shared/data)")
    path = tmp_path / "wikipedia.pcap.gz"
    path.write_bytes(gzip.compress(src.read_bytes()))
    assert assert_same_packets(path).num_rows > 100


@needs_tshark
def test_not_a_capture_names_the_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture file at all" * 10)
    with pytest.raises(CaptureFormatError, match=r"junk\.pcap"):
        list(read_packets_pyshark(junk))
    with pytest.raises(InputNotFoundError):
        list(read_packets_pyshark(tmp_path / "missing.pcap"))


def test_missing_tshark_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = pb.write_pcap(tmp_path / "one.pcap", [pb.Record(pb.ethernet(pb.arp_request(A, B), pb.ETH_ARP))])
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ToolMissingError, match="apt-get install tshark"):
        list(read_packets_pyshark(path))


@needs_tshark
def test_stopping_early_leaves_no_tshark(tmp_path: Path) -> None:
    recs = [pb.Record(_v4(pb.UDP, pb.udp(A, B, 1000 + i, 53, b"d" * 40)), ts_ns=i) for i in range(3000)]
    path = pb.write_pcap(tmp_path / "many.pcap", recs)
    batches = read_packets_pyshark(path, batch_size=100)
    first = next(batches)
    assert first.num_rows == 100
    batches.close()
    left = [p for p in psutil.Process().children(recursive=True) if p.is_running() and "tshark" in p.name()]
    assert not left, f"tshark left running: {left}"


@needs_tshark
def test_port_identities_same_as_fast_reader(tmp_path: Path) -> None:
    """A VM tap's frames take their port's VNI from its MAC in both engines (the innermost frame's MACs)."""
    from tests.capture.test_tenants import SHARED

    tm = tenant_map_from_dict(SHARED)
    web = pb.ipv4("10.0.1.10", "8.8.8.8", pb.UDP, pb.udp("10.0.1.10", "8.8.8.8", 40000, 53, b"q"))
    back = pb.ipv4("8.8.8.8", "10.0.1.10", pb.UDP, pb.udp("8.8.8.8", "10.0.1.10", 53, 40000, b"a"))
    frames = [
        pb.ethernet(web, src="02:02:0a:00:01:0a", dst="02:00:00:00:00:01"),  # globex's port sends
        pb.ethernet(back, src="02:00:00:00:00:01", dst="02:01:0a:00:01:0a"),  # acme's port receives
        pb.ethernet(web),  # unknown MACs: no VNI
        pb.ethernet(pb.ipv4("1.1.1.1", "2.2.2.2", pb.UDP, pb.udp("1.1.1.1", "2.2.2.2", 1, pb.VXLAN_PORT, pb.vxlan(
            300, pb.ethernet(web, src="02:02:0a:00:01:0a"))))),  # a VXLAN header's VNI wins over the inner MAC
    ]  # fmt: skip
    path = pb.write_pcap(tmp_path / "tap.pcap", [pb.Record(f, ts_ns=10**18 + i) for i, f in enumerate(frames)])
    fast, _, _ = read_tables(read_capture, path, port_vnis=tm.port_vnis)
    slow, _, _ = read_tables(read_capture_pyshark, path, port_vnis=tm.port_vnis)
    assert fast["vni"].to_pylist() == slow["vni"].to_pylist() == [200, 100, 0, 300]
    _assert_same_rows(path, fast, slow, PACKETS)
