"""The dns table: one row per DNS message on port 53, derived numbers only, against tshark on crafted messages
and real captures; names cut by the snap length are estimated from the UDP length; hostile bytes read nothing out
of bounds."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from netsentry.pipeline.capture.reader import read_capture
from netsentry.pipeline.capture.stage import run_capture
from netsentry.pipeline.core import catalog
from tests import pcapbuild as pb
from tests.conftest import TSHARK, run_tshark
from tests.paths import SHARED_DATA

T0 = 1_700_000_000_000_000_000
CLIENT, RESOLVER = "10.0.0.1", "10.0.0.53"
V6_CLIENT, V6_RESOLVER = "2001:db8::1", "2001:db8::53"
TUNNEL_NAME = ".".join(
    ["a1b2c3d4" * 7 + "e5f6a7b", "0f" * 30, "t.example.com"]
)  # labels of 63 and 60 chars: 138 in all
TSHARK_FIELDS = ("dns.flags.response", "dns.qry.type", "dns.flags.rcode", "dns.qry.name.len", "dns.count.labels")


def qname(name: str) -> bytes:
    """A name in wire form (no compression)."""
    return b"".join(bytes([len(x)]) + x.encode() for x in name.split(".") if x) + b"\x00"


def message(name: str, qtype: int = 1, *, response: bool = False, rcode: int = 0, edns: bool = False,
            answers: int = 0) -> bytes:  # fmt: skip
    """A DNS message with one question (and ``answers`` A records pointing at it, and an OPT record)."""
    flags = (0x8180 if response else 0x0100) | rcode
    head = struct.pack("!HHHHHH", 0x1234, flags, 1, answers, 0, 1 if edns else 0)
    body = qname(name) + struct.pack("!HH", qtype, 1)
    body += b"".join(b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes(4) for _ in range(answers))
    if edns:
        body += b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    return head + body


def udp_frame(payload: bytes, *, response: bool = False, src: str = CLIENT, dst: str = RESOLVER) -> bytes:
    a, b = (dst, src) if response else (src, dst)
    ports = (53, 40000) if response else (40000, 53)
    return pb.ethernet(pb.ipv4(a, b, pb.UDP, pb.udp(a, b, *ports, payload)))


def crafted() -> list[bytes]:
    tcp_msg = message("mail.example.org", 15)
    v6_msg = message("B.Example.COM", 65)
    return [
        udp_frame(message("www.example.com")),  # 0: A lookup
        udp_frame(message("www.example.com", response=True, answers=2), response=True),  # 1
        udp_frame(message("nope.example.com", 28, response=True, rcode=3), response=True),  # 2: NXDOMAIN
        udp_frame(message(TUNNEL_NAME, 16, edns=True)),  # 3: TXT, long encoded labels
        udp_frame(message("vaaaakaw1tm.t.example.com", 65399)),  # 4: private type (iodine)
        pb.ethernet(pb.ipv4(CLIENT, RESOLVER, pb.TCP, pb.tcp(CLIENT, RESOLVER, 40001, 53, flags=pb.PSH | pb.ACK,
                                                               payload=struct.pack("!H", len(tcp_msg)) + tcp_msg))),
        pb.ethernet(pb.ipv6(V6_CLIENT, V6_RESOLVER, pb.UDP, pb.udp(V6_CLIENT, V6_RESOLVER, 40002, 53, v6_msg)),
                    pb.ETH_IPV6),
    ]  # fmt: skip


def dns_of(path: Path) -> pa.Table:
    tables = [b.dns for b in read_capture(path) if b.dns is not None]
    return pa.concat_tables(tables)


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_crafted_messages_match_tshark(tmp_path: Path) -> None:
    path = pb.write_pcap(tmp_path / "dns.pcap", [pb.Record(f, ts_ns=T0 + i) for i, f in enumerate(crafted())])
    got = dns_of(path).to_pylist()
    want = run_tshark(path, TSHARK_FIELDS)
    assert len(got) == len(want) == 7
    for g, w in zip(got, want, strict=True):
        assert int(g["is_response"]) == int(w["dns.flags.response"][0] in ("1", "True"))
        assert (g["qtype"], g["rcode"]) == (int(w["dns.qry.type"][0]), int((w["dns.flags.rcode"] or ["0"])[0]))
        assert (g["name_len"], g["labels"]) == (int(w["dns.qry.name.len"][0]), int(w["dns.count.labels"][0]))
        assert not g["name_len_estimated"]
    assert [g["protocol"] for g in got][5] == pb.TCP
    assert got[3]["max_label_len"] == 63 and got[3]["label_entropy"] > got[0]["label_entropy"]
    assert got[0]["label_entropy"] < 3.1  # "wwwexamplecom": 9 distinct letters in 13, log2(9) = 3.17 at most


def test_registered_domain_is_a_case_blind_pseudonym(tmp_path: Path) -> None:
    names = ["a.example.com", "B.Example.COM", "x.y.example.com", "a.example.org", "a.example.com"]
    frames = [udp_frame(message(n)) for n in names]
    t = dns_of(pb.write_pcap(tmp_path / "d.pcap", [pb.Record(f, ts_ns=T0) for f in frames])).to_pydict()
    dom, name = t["domain_hash"], t["name_hash"]
    assert dom[0] == dom[1] == dom[2] == dom[4] != dom[3]
    assert name[0] == name[4] != name[2] and 0 not in dom


def test_name_cut_by_the_snap_length_is_estimated_from_the_udp_length(tmp_path: Path) -> None:
    frames = [udp_frame(message(TUNNEL_NAME, 16, edns=True)), udp_frame(message(TUNNEL_NAME, 10))]
    recs = [pb.Record(f[:128], ts_ns=T0, orig_len=len(f)) for f in frames]
    t = dns_of(pb.write_pcap(tmp_path / "cut.pcap", recs, snaplen=128)).to_pydict()
    assert t["name_len"] == [len(TUNNEL_NAME)] * 2  # header 12 + name + 2 + tail 4 (+ OPT 11)
    assert t["name_len_estimated"] == [True, True]
    assert t["qtype"] == [0, 0] and t["domain_hash"] == [0, 0]  # not captured: unknown, not guessed
    assert t["max_label_len"] == [63, 63]


def test_hostile_bytes_give_bounded_rows_or_none(tmp_path: Path) -> None:
    pointer = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
    bad_label = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x50" + b"a" * 80
    rng = np.random.default_rng(7)
    junk = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in rng.integers(0, 300, 200)]
    frames = [udp_frame(pointer), udp_frame(bad_label), udp_frame(b"\x00" * 11)] + [udp_frame(j) for j in junk]
    t = dns_of(pb.write_pcap(tmp_path / "bad.pcap", [pb.Record(f, ts_ns=T0) for f in frames])).to_pydict()
    assert t["labels"][:2] == [0, 0] and t["name_len"][:2] == [0, 0]  # pointer not followed, label type refused
    assert max(t["name_len"]) <= 253 and len(t["ts_ns"]) == 1 + 1 + sum(len(j) >= 12 for j in junk)


def test_capture_stage_writes_the_dns_table(tmp_path: Path) -> None:
    path = pb.write_pcap(tmp_path / "dns.pcap", [pb.Record(f, ts_ns=T0 + i) for i, f in enumerate(crafted())])
    run_capture([path], tmp_path / "ws")
    d = catalog.path(tmp_path / "ws", catalog.DNS)
    manifest = catalog.manifest(tmp_path / "ws", catalog.DNS)
    assert manifest["rows"] == 7 and (d / "part-00000.parquet").exists()


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
@pytest.mark.parametrize(
    "name", ["ndpi/dns_exfiltration.pcap", "korving-doh/iodine_filetransfer_private_base128_4c996739.pcap"]
)
def test_real_tunnels_match_tshark(name: str) -> None:
    path = SHARED_DATA / "open" / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    got = dns_of(path).to_pylist()
    want = run_tshark(path, TSHARK_FIELDS, "-Y", "(udp.port == 53 or tcp.port == 53) and dns")
    assert len(got) == len(want) > 40
    for g, w in zip(got, want, strict=True):
        assert (g["qtype"], g["rcode"], g["name_len"], g["labels"]) == tuple(
            int((w[f] or ["0"])[0]) for f in TSHARK_FIELDS[1:]
        )
