"""ARP is kept: the capture decodes Ethernet/IPv4 ARP into its own table (``arp/``), with known answers on crafted
frames (requests, replies, VLAN tags, tunnels, cooked links, gratuitous, cut short, other address kinds) and on a
real ARP scan; the packets table is unchanged, and a capture of ARP alone is usable."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from netsentry.pipeline.capture.reader import read_capture
from netsentry.pipeline.capture.stage import run_capture
from netsentry.pipeline.cli import app
from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.errors import NoUsableDataError
from netsentry.pipeline.core.schemas import ARP, PACKETS, ip_text, mac_from_text, mac_text
from netsentry.pipeline.features.stage import run_features
from netsentry.pipeline.flows.stage import run_flows
from tests import pcapbuild as pb
from tests.conftest import TSHARK, read_tables, run_tshark
from tests.paths import SHARED_DATA

T0 = 1_700_000_000_000_000_000
A, B, C, GW = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.254"
MAC_C, MAC_GW = "02:00:00:00:00:0c", "02:00:00:00:00:fe"
ARP_SCAN = SHARED_DATA / "open" / "sgr-favilli" / "hs-arpScan.pcap"
SCANNER, SCANNER_MAC = "10.0.0.128", "00:0c:29:20:a8:7f"


def rows(arp: pa.Table) -> list[dict]:
    """ARP rows with addresses as text."""
    out = arp.to_pylist()
    text = {name: ip_text(arp[name]) for name in ("sender_ip", "target_ip")}
    text |= {name: mac_text(arp[name]) for name in ("src_mac", "dst_mac", "sender_mac", "target_mac")}
    for i, row in enumerate(out):
        row.update({name: values[i] for name, values in text.items()})
    return out


def arp_frames() -> list[bytes]:
    """Request, reply, tagged, gratuitous and unusual-op ARP frames around one UDP packet, one LLDP frame, two cut-short
    ARP frames and one ARP with 8-byte hardware addresses."""
    request = pb.arp_request(A, B)
    reply = pb.arp_reply(B, A, sender_mac=pb.MAC_B, target_mac=pb.MAC_A)
    wide = pb.arp_body(1, bytes(range(8)), pb.ip_bytes(A), bytes(8), pb.ip_bytes(B))
    lldp = pb.ethernet(b"\x02\x07\x04" + bytes(7), 0x88CC)
    return [
        pb.ethernet(request, pb.ETH_ARP, dst=pb.MAC_BROADCAST),  # 0
        pb.ethernet(reply, pb.ETH_ARP, src=pb.MAC_B, dst=pb.MAC_A),  # 1
        pb.ethernet(pb.ipv4(A, B, pb.UDP, pb.udp(A, B, 5000, 53, b"q"))),  # 2: the one IP packet
        pb.ethernet(request, pb.ETH_ARP, dst=pb.MAC_BROADCAST, vlans=[100]),  # 3
        pb.ethernet(reply, pb.ETH_ARP, src=pb.MAC_B, dst=pb.MAC_A, vlans=[10, 20], qinq=True),  # 4: outer tag
        pb.ethernet(pb.gratuitous_arp(C, sender_mac=MAC_C, reply=True), pb.ETH_ARP, src=MAC_C, dst=pb.MAC_BROADCAST),
        pb.ethernet(pb.arp(8, A, B), pb.ETH_ARP) + bytes(18),  # 6: InARP request, padded to the Ethernet minimum
        pb.ethernet(request, pb.ETH_ARP)[: 14 + 20],  # cut inside the addresses: malformed
        pb.ethernet(request, pb.ETH_ARP)[: 14 + 5],  # cut inside the header: malformed
        pb.ethernet(wide, pb.ETH_ARP),  # not Ethernet/IPv4: a non-IP frame
        lldp,
    ]


def arp_only() -> list[bytes]:
    """The six frames of :func:`arp_frames` that become ARP rows, nothing else."""
    frames = arp_frames()
    return [frames[k] for k in (0, 1, 3, 4, 5, 6)]


EXPECTED = [
    # (op, src_mac, dst_mac, sender_mac, sender_ip, target_mac, target_ip, vlan, gratuitous)
    (1, pb.MAC_A, pb.MAC_BROADCAST, pb.MAC_A, A, pb.MAC_ZERO, B, 0, False),
    (2, pb.MAC_B, pb.MAC_A, pb.MAC_B, B, pb.MAC_A, A, 0, False),
    (1, pb.MAC_A, pb.MAC_BROADCAST, pb.MAC_A, A, pb.MAC_ZERO, B, 100, False),
    (2, pb.MAC_B, pb.MAC_A, pb.MAC_B, B, pb.MAC_A, A, 10, False),
    (2, MAC_C, pb.MAC_BROADCAST, MAC_C, C, pb.MAC_BROADCAST, C, 0, True),
    (8, pb.MAC_A, pb.MAC_B, pb.MAC_A, A, pb.MAC_ZERO, B, 0, False),
]
EXPECTED_TS = [T0 + k * 1000 for k in (0, 1, 3, 4, 5, 6)]
KEYS = ("op", "src_mac", "dst_mac", "sender_mac", "sender_ip", "target_mac", "target_ip", "vlan", "gratuitous")


def write(path: Path, frames: list[bytes], linktype: int = pb.LINKTYPE_ETHERNET) -> Path:
    return pb.write_pcap(path, [pb.Record(f, ts_ns=T0 + i * 1000) for i, f in enumerate(frames)], linktype)


def test_arp_frames_decode_to_known_rows(tmp_path: Path) -> None:
    packets, arp, stats = read_tables(read_capture, write(tmp_path / "arp.pcap", arp_frames()))
    assert arp.schema == ARP
    assert [tuple(r[k] for k in KEYS) for r in rows(arp)] == EXPECTED
    assert arp["ts_ns"].to_pylist() == EXPECTED_TS
    assert set(arp["capture_point"].to_pylist()) == {"arp.pcap"} and set(arp["vni"].to_pylist()) == {0}
    # the IP packet is decoded as before; ARP rows, the other ARP and LLDP are non-IP frames; two are cut short
    assert packets.num_rows == 1 and packets["dst_port"].to_pylist() == [53]
    assert (stats.records, stats.packets, stats.arp, stats.non_ip, stats.malformed) == (11, 1, 6, 8, 2)
    assert stats.usable and stats.first_ts_ns == stats.last_ts_ns == T0 + 2000  # the IP packets' span


def test_every_cut_of_an_arp_frame_is_malformed_until_it_is_whole(tmp_path: Path) -> None:
    """Bounds: a tagged ARP frame cut at every length reads as malformed (or, inside the link header, as a frame
    of no kind we keep) and never as a row; the whole frame is one row."""
    frame = pb.ethernet(pb.arp_request(A, B), pb.ETH_ARP, vlans=[7])
    cuts = list(range(len(frame)))
    _, arp, stats = read_tables(read_capture, write(tmp_path / "cuts.pcap", [frame[:k] for k in cuts] + [frame]))
    assert arp.num_rows == 1 and arp["vlan"].to_pylist() == [7]
    assert stats.malformed == len(cuts) and stats.non_ip == 1


def test_arp_rows_survive_small_batches(tmp_path: Path) -> None:
    path = write(tmp_path / "arp.pcap", arp_frames() * 5)
    _, whole, _ = read_tables(read_capture, path)
    _, batched, stats = read_tables(read_capture, path, batch_records=3, chunk_bytes=1 << 16)
    assert batched.equals(whole) and whole.num_rows == 30 and stats.arp == 30


@pytest.mark.parametrize(
    ("linktype", "frame"),
    [
        (pb.LINKTYPE_SLL, pb.sll(pb.arp_request(A, B), pb.ETH_ARP, addr=pb.MAC_A)),
        (pb.LINKTYPE_SLL2, pb.sll2(pb.arp_request(A, B), pb.ETH_ARP, addr=pb.MAC_A)),
    ],
    ids=["sll", "sll2"],
)
def test_cooked_captures_give_the_source_mac_only(tmp_path: Path, linktype: int, frame: bytes) -> None:
    _, arp, stats = read_tables(read_capture, write(tmp_path / "cooked.pcap", [frame], linktype))
    (row,) = rows(arp)
    assert (row["src_mac"], row["dst_mac"], row["sender_mac"], row["sender_ip"]) == (pb.MAC_A, pb.MAC_ZERO, pb.MAC_A, A)
    assert stats.arp == 1 and stats.linktypes == {linktype}


def test_arp_inside_vxlan_carries_the_vni_and_inner_macs(tmp_path: Path) -> None:
    inner = pb.ethernet(pb.gratuitous_arp(GW, sender_mac=MAC_GW), pb.ETH_ARP, src=MAC_GW, dst=pb.MAC_BROADCAST)
    outer = pb.ethernet(pb.ipv4(A, B, pb.UDP, pb.udp(A, B, 40000, pb.VXLAN_PORT, pb.vxlan(5001, inner))), vlans=[3])
    packets, arp, _ = read_tables(read_capture, write(tmp_path / "vx.pcap", [outer]))
    (row,) = rows(arp)
    assert (row["vni"], row["vlan"], row["src_mac"], row["sender_ip"], row["gratuitous"]) == (5001, 3, MAC_GW, GW, True)
    assert packets.num_rows == 0  # as before: the tunnel packet of a non-IP inner frame is not a packet row


def test_mac_text_round_trip() -> None:
    assert mac_from_text(SCANNER_MAC) == 0x000C2920A87F
    assert list(mac_text(pa.array([0x000C2920A87F, 0xFFFFFFFFFFFF], pa.uint64()))) == [SCANNER_MAC, pb.MAC_BROADCAST]


# ---------------------------------------------------------------- the stage and the stages after it


def test_capture_of_arp_alone_is_usable_and_later_stages_finish_empty(tmp_path: Path) -> None:
    path, ws = write(tmp_path / "only-arp.pcap", arp_only()), tmp_path / "ws"
    summary = run_capture([path], ws)
    assert (summary.packets, summary.arp) == (0, 6)
    assert pq.read_table(ws / "packets").num_rows == 0 and pq.read_table(ws / "packets").schema == PACKETS
    arp = pq.read_table(catalog.path(ws, catalog.ARP))
    assert arp.schema == ARP and arp.num_rows == 6
    manifest = catalog.manifest(ws, "arp")
    assert manifest is not None and manifest["rows"] == 6
    assert manifest["parts"][0]["first_ts_ns"] == T0 and manifest["parts"][0]["last_ts_ns"] == T0 + 5000
    assert run_flows(ws).flows == 0
    features = run_features(ws)
    assert (features.tenant_rows, features.fault_rows) == (0, 0)
    assert run_capture([path], ws).skipped_unchanged


def test_capture_of_neither_ip_nor_arp_still_fails(tmp_path: Path) -> None:
    path = write(tmp_path / "lldp.pcap", [pb.ethernet(b"\x02\x07\x04" + bytes(7), 0x88CC)])
    with pytest.raises(NoUsableDataError, match="no IP packets or ARP frames"):
        run_capture([path], tmp_path / "ws")
    assert not (tmp_path / "ws" / "arp").exists() and not (tmp_path / "ws" / "packets").exists()


def test_mixed_inputs_write_arp_parts_only_for_files_with_arp(tmp_path: Path) -> None:
    ip_only = write(tmp_path / "a-ip.pcap", [arp_frames()[2]])
    with_arp = write(tmp_path / "b-mixed.pcap", arp_frames())
    ws = tmp_path / "ws"
    run_capture([ip_only, with_arp], ws)
    pkt, arp = catalog.manifest(ws, "packets"), catalog.manifest(ws, "arp")
    assert pkt is not None and arp is not None
    assert [p["part"] for p in pkt["parts"]] == ["part-00000.parquet", "part-00001.parquet"] and pkt["rows"] == 2
    assert [(p["part"], p["rows"]) for p in arp["parts"]] == [("part-00001.parquet", 6)] and arp["rows"] == 6
    assert [f["arp"] for f in pkt["files"]] == [0, 6]


def test_cli_capture_summary_mentions_arp(tmp_path: Path) -> None:
    path = write(tmp_path / "only-arp.pcap", arp_only())
    res = CliRunner().invoke(app, ["capture", str(path), "-w", str(tmp_path / "ws")])
    assert res.exit_code == 0, res.output
    assert "6 ARP frames" in res.output
    res = CliRunner().invoke(app, ["capture", str(path), "-w", str(tmp_path / "ws")])
    assert res.exit_code == 0 and "up to date" in res.output and "6 ARP frames" in res.output


# ---------------------------------------------------------------- a real ARP scan


@pytest.fixture(scope="module")
def arp_scan() -> Path:
    if not ARP_SCAN.is_file():
        pytest.skip(f"shared capture {ARP_SCAN} not found (expected <repo>/../shared/data)")
    return ARP_SCAN


@pytest.mark.shared
def test_real_arp_scan(arp_scan: Path, tmp_path: Path) -> None:
    """509 who-has requests from 10.0.0.128 (00:0c:29:20:a8:7f), broadcast, for the 256 addresses of 10.0.0.0/24."""
    packets, arp, stats = read_tables(read_capture, arp_scan)
    assert (packets.num_rows, arp.num_rows, stats.arp, stats.malformed) == (0, 509, 509, 0)
    got = rows(arp)
    assert {(r["op"], r["sender_ip"], r["sender_mac"], r["src_mac"], r["dst_mac"]) for r in got} == {
        (1, SCANNER, SCANNER_MAC, SCANNER_MAC, pb.MAC_BROADCAST)
    }
    targets = {r["target_ip"] for r in got}
    assert len(targets) == 256 and targets == {f"10.0.0.{k}" for k in range(256)}
    # the scanner asks for its own address too: those requests are gratuitous in form
    assert sum(r["gratuitous"] for r in got) == sum(r["target_ip"] == SCANNER for r in got) > 0
    code = CliRunner().invoke(app, ["capture", str(arp_scan), "-w", str(tmp_path / "ws")])
    assert code.exit_code == 0, code.output
    assert json.loads((tmp_path / "ws" / "arp" / "_manifest.json").read_text())["rows"] == 509


@pytest.mark.shared
@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_real_arp_scan_matches_tshark(arp_scan: Path) -> None:
    fields = ("arp.opcode", "arp.src.hw_mac", "arp.src.proto_ipv4", "arp.dst.proto_ipv4")
    expected = [tuple(r[f][0] for f in fields) for r in run_tshark(arp_scan, fields)]
    got = [
        (str(r["op"]), r["sender_mac"], r["sender_ip"], r["target_ip"])
        for r in rows(read_tables(read_capture, arp_scan)[1])
    ]
    assert got == expected
