"""Bad inputs: unreadable files raise typed errors naming the file; damaged captures keep every
complete packet before the damage and report exactly what was skipped in ``CaptureStats``."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from netsentry.pipeline.capture.reader import CaptureStats, read_packets
from netsentry.pipeline.core.errors import CaptureFormatError, InputNotFoundError
from tests.pcapbuild import (
    ETH_ARP,
    ETH_IPV4,
    ETH_IPV6,
    LINKTYPE_ETHERNET,
    TCP,
    UDP,
    Interface,
    Record,
    arp_request,
    ethernet,
    ipv4,
    ipv6,
    pcap_bytes,
    pcap_header,
    pcapng_bytes,
    pcapng_epb,
    pcapng_idb,
    pcapng_shb,
    tcp,
    udp,
    write_pcap,
    write_pcapng,
)

ReadCapture = Callable[..., tuple[pa.Table, CaptureStats]]

T0 = 1_700_000_000_000_000_000
A, B = "10.0.0.1", "10.0.0.2"
A6, B6 = "2001:db8::1", "2001:db8::2"
LINKTYPE_USER0 = 147  # a link type the reader does not decode


def good_frames(n: int = 6) -> list[bytes]:
    """``n`` valid TCP/IPv4 frames of different sizes, source port 1000 + i."""
    return [ethernet(ipv4(A, B, TCP, tcp(A, B, 1000 + i, 80, seq=i, payload=bytes(10 * i)))) for i in range(n)]


def recs(frames: list[bytes]) -> list[Record]:
    return [Record(f, ts_ns=T0 + i * 1000) for i, f in enumerate(frames)]


def ports(table: pa.Table) -> list[int]:
    return table["src_port"].to_pylist()


# ---------------------------------------------------------------- files we cannot read at all


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.pcap"
    with pytest.raises(InputNotFoundError, match=r"nope\.pcap"):
        next(read_packets(path))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcap"
    path.write_bytes(b"")
    with pytest.raises(CaptureFormatError, match="empty") as info:
        next(read_packets(path))
    assert str(path) in str(info.value) and info.value.path == str(path)


def test_text_file_is_not_a_capture(tmp_path: Path) -> None:
    path = tmp_path / "notes.pcap"
    path.write_text("this is not a capture\n" * 10)
    with pytest.raises(CaptureFormatError, match="not a pcap or pcapng") as info:
        next(read_packets(path))
    assert str(path) in str(info.value)


def test_truncated_pcap_file_header(tmp_path: Path) -> None:
    path = tmp_path / "short.pcap"
    path.write_bytes(pcap_header(LINKTYPE_ETHERNET)[:10])
    with pytest.raises(CaptureFormatError, match=r"header truncated \(10 of 24 bytes\)") as info:
        next(read_packets(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
def test_unknown_linktype_in_pcap_header(tmp_path: Path, big_endian: bool) -> None:
    path = write_pcap(tmp_path / "user0.pcap", recs(good_frames(2)), LINKTYPE_USER0, big_endian=big_endian)
    with pytest.raises(CaptureFormatError, match="link type 147 is not supported") as info:
        next(read_packets(path))
    assert str(path) in str(info.value)


def test_modified_pcap_magic_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kuznetzov.pcap"
    path.write_bytes(b"\x34\xcd\xb2\xa1" + pcap_header(LINKTYPE_ETHERNET)[4:])
    with pytest.raises(CaptureFormatError, match="editcap"):
        next(read_packets(path))


# ---------------------------------------------------------------- damaged files: keep what came before


def test_header_only_pcap_has_no_packets_and_no_problems(tmp_path: Path, read_capture: ReadCapture) -> None:
    table, stats = read_capture(write_pcap(tmp_path / "none.pcap", []))
    assert table.num_rows == 0 and stats.records == 0 and not stats.usable
    assert stats.problems() == []


@pytest.mark.parametrize("keep", [10, 16, 40], ids=["in-record-header", "after-record-header", "in-data"])
def test_truncated_last_record(tmp_path: Path, read_capture: ReadCapture, keep: int) -> None:
    """A file cut inside its last record: the complete records stay, the tail is measured."""
    frames = good_frames()
    data = pcap_bytes(recs(frames))
    last = 16 + len(frames[-1])
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[: len(data) - last + keep])
    table, stats = read_capture(path)
    assert ports(table) == [1000, 1001, 1002, 1003, 1004]
    assert stats.truncated_tail_bytes == keep > 0 and stats.corrupt_offset is None
    problems = stats.problems()
    assert len(problems) == 1 and problems[0].startswith(f"{path}: last record truncated ({keep} bytes")


def test_truncated_pcapng_block(tmp_path: Path, read_capture: ReadCapture) -> None:
    data = pcapng_bytes([Interface(LINKTYPE_ETHERNET)], recs(good_frames()))
    path = tmp_path / "cut.pcapng"
    path.write_bytes(data[:-7])
    table, stats = read_capture(path)
    assert ports(table) == [1000, 1001, 1002, 1003, 1004]
    last_block = 32 + (len(good_frames()[-1]) + 3) // 4 * 4
    assert stats.truncated_tail_bytes == last_block - 7
    assert len(stats.problems()) == 1 and str(path) in stats.problems()[0]


@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
def test_corrupt_record_length_midway(tmp_path: Path, read_capture: ReadCapture, big_endian: bool) -> None:
    """incl_len = 0xFFFFFF00 in the 4th record: three packets kept, the exact offset reported."""
    frames = good_frames()
    data = bytearray(pcap_bytes(recs(frames), big_endian=big_endian))
    offset = 24 + sum(16 + len(f) for f in frames[:3])
    data[offset + 8 : offset + 12] = struct.pack(">I" if big_endian else "<I", 0xFFFFFF00)
    path = tmp_path / "corrupt.pcap"
    path.write_bytes(bytes(data))
    table, stats = read_capture(path)
    assert ports(table) == [1000, 1001, 1002]
    assert stats.corrupt_offset == offset and stats.records == 3
    assert stats.problems() == [
        f"{path}: corrupt record header at byte {offset}; stopped there, kept the 3 records before it"
    ]


def test_corrupt_block_length_in_pcapng(tmp_path: Path, read_capture: ReadCapture) -> None:
    """A pcapng block whose trailing length disagrees with its leading one stops the walk there."""
    frames = good_frames()
    head = pcapng_shb() + pcapng_idb(Interface(LINKTYPE_ETHERNET))
    blocks = [pcapng_epb(0, i, f) for i, f in enumerate(frames)]
    bad = bytearray(blocks[2])
    bad[-4:] = struct.pack("<I", len(bad) + 4)
    path = tmp_path / "corrupt.pcapng"
    path.write_bytes(head + b"".join(blocks[:2]) + bytes(bad) + b"".join(blocks[3:]))
    table, stats = read_capture(path)
    assert ports(table) == [1000, 1001]
    assert stats.corrupt_offset == len(head) + len(blocks[0]) + len(blocks[1])


def test_unknown_linktype_interface_in_pcapng(tmp_path: Path, read_capture: ReadCapture) -> None:
    """Packets on an Ethernet interface are kept; those on an interface of unknown link type counted."""
    frames = good_frames()
    ifaces = [Interface(LINKTYPE_ETHERNET), Interface(LINKTYPE_USER0, tsresol=9)]
    records = [Record(f, ts_ns=T0 + i, iface=i % 2) for i, f in enumerate(frames)]
    table, stats = read_capture(write_pcapng(tmp_path / "mixed.pcapng", ifaces, records))
    assert ports(table) == [1000, 1002, 1004]
    assert (stats.unsupported_linktype, stats.records, stats.packets) == (3, 6, 3)
    assert stats.linktypes == {LINKTYPE_ETHERNET, LINKTYPE_USER0}
    assert any("unsupported link type 147" in p for p in stats.problems())


def test_epb_naming_an_undeclared_interface(tmp_path: Path, read_capture: ReadCapture) -> None:
    frames = good_frames(4)
    records = [Record(f, ts_ns=T0 + i, iface=5 if i == 1 else 0) for i, f in enumerate(frames)]
    path = write_pcapng(tmp_path / "undeclared.pcapng", [Interface(LINKTYPE_ETHERNET)], records)
    table, stats = read_capture(path)
    assert ports(table) == [1000, 1002, 1003]
    assert stats.undeclared_interface == 1
    assert stats.problems() == [f"{path}: 1 packet(s) naming an undeclared interface skipped"]


def test_packet_before_any_interface(tmp_path: Path, read_capture: ReadCapture) -> None:
    """An EPB before the first IDB names an undeclared interface; later packets are fine."""
    frames = good_frames(3)
    path = tmp_path / "early.pcapng"
    path.write_bytes(
        pcapng_shb()
        + pcapng_epb(0, 1, frames[0])
        + pcapng_idb(Interface(LINKTYPE_ETHERNET))
        + pcapng_epb(0, 2, frames[1])
        + pcapng_epb(0, 3, frames[2])
    )
    table, stats = read_capture(path)
    assert ports(table) == [1001, 1002] and stats.undeclared_interface == 1


def cut_frames() -> dict[str, bytes]:
    """Frames whose headers are cut short or inconsistent, each a malformed packet."""
    v4 = ipv4(A, B, TCP, tcp(A, B, 1, 2))
    v6 = ipv6(A6, B6, UDP, udp(A6, B6, 1, 2))
    return {
        "ethernet": ethernet(b"")[:10],
        "vlan-tag": ethernet(b"", vlans=[5])[:16],
        "ipv4-header": ethernet(v4[:12]),
        "ipv4-options": ethernet(bytes([0x46]) + v4[1:20]),  # IHL says 24 bytes, 20 captured
        "ipv4-ihl": ethernet(bytes([0x44]) + v4[1:]),  # IHL 16 bytes < 20
        "ipv4-version": ethernet(bytes([0x65]) + v4[1:]),  # ethertype IPv4, version 6
        "ipv4-total-length": ethernet(v4[:2] + struct.pack("!H", 12) + v4[4:]),  # total length < header
        "ipv6-header": ethernet(v6[:30], ETH_IPV6),
        "ipv6-ext": ethernet(ipv6(A6, B6, 0, b"\x11\x00\x01\x04"), ETH_IPV6),  # hop-by-hop header cut
        "tcp-header": ethernet(v4[:30]),
        "udp-header": ethernet(v6[:44], ETH_IPV6),
    }


def test_cut_headers_are_malformed_and_skipped(tmp_path: Path, read_capture: ReadCapture) -> None:
    bad = cut_frames()
    good = good_frames(len(bad) + 1)
    frames = [f for pair in zip(good, bad.values(), strict=False) for f in pair] + [good[-1]]
    table, stats = read_capture(write_pcap(tmp_path / "cut.pcap", recs(frames)))
    assert ports(table) == [1000 + i for i in range(len(good))]
    assert stats.malformed == len(bad) and stats.packets == len(good) and stats.non_ip == 0
    assert stats.problems() == [
        f"{stats.path}: {len(bad)} malformed packet(s) skipped (headers cut short or inconsistent)"
    ]


@pytest.mark.parametrize("name", list(cut_frames()))
def test_each_cut_header_is_malformed(tmp_path: Path, read_capture: ReadCapture, name: str) -> None:
    _, stats = read_capture(write_pcap(tmp_path / "one.pcap", recs([cut_frames()[name]])))
    assert (stats.malformed, stats.packets) == (1, 0), name


def test_snaplen_cut_payload_is_not_malformed(tmp_path: Path, read_capture: ReadCapture) -> None:
    """A frame cut by the snap length after the TCP header is a packet: lengths from the IP header."""
    frame = ethernet(ipv4(A, B, TCP, tcp(A, B, 7, 8, payload=bytes(1000))))
    table, stats = read_capture(write_pcap(tmp_path / "snap.pcap", [Record(frame[:54], T0, orig_len=len(frame))]))
    row = table.to_pylist()[0]
    assert (row["src_port"], row["cap_len"], row["frame_len"], row["ip_len"], row["payload_len"]) == (
        7,
        54,
        len(frame),
        1040,
        1000,
    )
    assert stats.malformed == 0


def test_non_ip_frames_are_counted_not_malformed(tmp_path: Path, read_capture: ReadCapture) -> None:
    lldp = ethernet(b"\x02\x07\x04" + bytes(7), 0x88CC)
    frames = [good_frames(1)[0], ethernet(arp_request(A, B), ETH_ARP), lldp, ethernet(b"\x00" * 40, 0x0026)]
    table, stats = read_capture(write_pcap(tmp_path / "l2.pcap", recs(frames)))
    assert (table.num_rows, stats.non_ip, stats.malformed) == (1, 3, 0)
    assert stats.problems() == []


# ---------------------------------------------------------------- compressed captures


def test_gzip_reads_the_same_as_plain(tmp_path: Path, read_capture: ReadCapture) -> None:
    frames = [*good_frames(), ethernet(ipv6(A6, B6, UDP, udp(A6, B6, 5, 6, b"x")), ETH_IPV6)]
    plain = write_pcap(tmp_path / "t.pcap", recs(frames))
    packed = tmp_path / "t.pcap.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    t1, s1 = read_capture(plain, capture_point="tap")
    t2, s2 = read_capture(packed, capture_point="tap")
    assert t2.equals(t1)
    assert {**s2.as_dict(), "path": ""} == {**s1.as_dict(), "path": ""}


def test_gzip_pcapng_reads_the_same_as_plain(tmp_path: Path, read_capture: ReadCapture) -> None:
    plain = write_pcapng(tmp_path / "t.pcapng", [Interface(LINKTYPE_ETHERNET, tsresol=9)], recs(good_frames()))
    packed = tmp_path / "t.pcapng.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_capture(packed, capture_point="tap")[0].equals(read_capture(plain, capture_point="tap")[0])


def test_gzip_of_a_text_file_is_not_a_capture(tmp_path: Path) -> None:
    path = tmp_path / "notes.gz"
    path.write_bytes(gzip.compress(b"hello world, not a capture at all"))
    with pytest.raises(CaptureFormatError, match="not a pcap"):
        next(read_packets(path))


def test_truncated_gzip_keeps_complete_packets(tmp_path: Path, read_capture: ReadCapture) -> None:
    """A compressed capture cut short (a partial copy) reads like a truncated plain one."""
    frames = good_frames(200)
    packed = gzip.compress(pcap_bytes(recs(frames)), compresslevel=1)
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    table, stats = read_capture(path)
    assert 0 < table.num_rows < len(frames)
    assert ports(table) == [1000 + i for i in range(table.num_rows)]
    assert stats.problems() and all(str(path) in p for p in stats.problems())


def test_corrupt_gzip_trailer_keeps_packets(tmp_path: Path, read_capture: ReadCapture) -> None:
    """A bad CRC at the end of the gzip stream: every packet read, the damage reported."""
    frames = good_frames()
    packed = bytearray(gzip.compress(pcap_bytes(recs(frames))))
    packed[-8:-4] = b"\x00\x00\x00\x00"  # CRC32
    path = tmp_path / "crc.pcap.gz"
    path.write_bytes(bytes(packed))
    table, stats = read_capture(path)
    assert ports(table) == [1000 + i for i in range(len(frames))]
    assert len(stats.problems()) == 1 and str(path) in stats.problems()[0]


def test_ipv4_ethertype_with_padding_only(tmp_path: Path, read_capture: ReadCapture) -> None:
    """An Ethernet frame typed IPv4 with fewer than 20 bytes after the header is malformed."""
    _, stats = read_capture(write_pcap(tmp_path / "pad.pcap", recs([ethernet(bytes(10), ETH_IPV4)])))
    assert stats.malformed == 1


@pytest.mark.parametrize(
    "data", [b"\x1f\x8b\x09garbage-after-a-gzip-magic", b"gz-cut"], ids=["bad-method", "cut-in-header"]
)
def test_gzip_damaged_at_its_start(tmp_path: Path, data: bytes) -> None:
    """A file that starts like gzip but cannot give the capture header is a format error, not a crash."""
    path = tmp_path / "bad.pcap.gz"
    path.write_bytes(data if data.startswith(b"\x1f\x8b") else gzip.compress(pcap_bytes(recs(good_frames())))[:12])
    with pytest.raises(CaptureFormatError, match="compressed stream unreadable") as info:
        next(read_packets(path))
    assert str(path) in str(info.value)
