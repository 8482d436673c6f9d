"""Cross-check engine (``--engine pyshark``): a capture file → packet and ARP tables through tshark.

This reads the file with ``pyshark.FileCapture(use_ek=True)`` and rebuilds exactly the columns of
:data:`netsentry.pipeline.core.schemas.PACKETS` with the same rules as
:mod:`netsentry.pipeline.capture.decode` (outermost VLAN, VXLAN/Geneve decapsulation, L4 payload from header
lengths, raw TCP sequence numbers, the same ``pkt_hash``). It builds a Python object per packet and runs at a
few thousand packets per second, so it is only meant to check the fast reader
(:func:`netsentry.pipeline.capture.reader.read_packets`) on real captures, not for volume.

Layers are read from the dictionaries pyshark's EK parser keeps (``EkLayer._fields_dict``):
pyshark's field accessors break when a protocol occurs twice in a frame (a tunnel's inner IP/UDP
headers come back as a list of dicts), which is exactly the case we must get right.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from netsentry.pipeline.capture.decode import GENEVE_PORT, VXLAN_PORT
from netsentry.pipeline.capture.pyshark_arp import ArpRow, arp_batch, arp_row, link_macs
from netsentry.pipeline.capture.reader import (
    GZIP_MAGIC,
    PCAP_MAGICS,
    PCAPNG_MAGIC,
    CaptureBatch,
    CaptureStats,
    PortVnis,
    columns_to_table,
)
from netsentry.pipeline.core.errors import CaptureFormatError, InputNotFoundError, ToolMissingError
from netsentry.pipeline.core.hashing import FNV1A64_OFFSET, FNV1A64_PRIME, MURMUR3_FMIX64, finalize64
from netsentry.pipeline.core.schemas import ip16_from_text

log = logging.getLogger(__name__)

INSTALL_HINT = "tshark is not installed; install it with `apt-get install tshark`"

# Wiretap encapsulation (frame.encap_type) → pcap link type, for the link types the fast reader decodes.
WTAP_TO_LINKTYPE = {1: 1, 7: 101, 15: 0, 174: 108, 25: 113, 129: 228, 130: 229, 210: 276}

# tshark preferences: one row per captured frame, no reassembly, raw sequence numbers, less work.
TSHARK_PREFS = {
    "ip.defragment": "FALSE",
    "ipv6.defragment": "FALSE",
    "tcp.desegment_tcp_streams": "FALSE",
    "tcp.analyze_sequence_numbers": "FALSE",
    "tcp.relative_sequence_numbers": "FALSE",
    "tcp.calculate_timestamps": "FALSE",
    "udp.calculate_timestamps": "FALSE",
}
# Only these layers (with their subtrees) are written out by tshark; frame.protocols still lists all.
TSHARK_LAYERS = "frame eth sll vlan ieee8021ad arp ip ipv6 tcp udp icmp icmpv6 vxlan geneve"

_LINK_LAYERS = frozenset({"eth", "ethertype", "sll", "null", "raw", "vlan", "ieee8021ad"})
_V6_EXT = {"ipv6.hopopts": "ipv6_hopopts", "ipv6.routing": "ipv6_routing", "ipv6.dstopts": "ipv6_dstopts"}
_L4_LAYER = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}
_MAX_DEPTH = 1  # like decode.py: decapsulate one tunnel level

# Decoder outcomes besides a row tuple.
_NON_IP, _MALFORMED = "non_ip", "malformed"

_COLUMNS = (
    "ts_ns", "frame_len", "cap_len", "vni", "vlan", "ip_version", "src_ip", "dst_ip", "proto",
    "src_port", "dst_port", "ip_len", "payload_len", "ttl", "ip_id", "frag", "tcp_flags", "tcp_seq",
    "tcp_ack", "tcp_win", "icmp_type", "icmp_code", "src_mac", "dst_mac",
)  # fmt: skip
_DTYPES = {
    "ts_ns": np.int64, "frame_len": np.uint32, "cap_len": np.uint32, "vni": np.uint32, "vlan": np.uint16,
    "ip_version": np.uint8, "proto": np.uint8, "src_port": np.uint16, "dst_port": np.uint16,
    "ip_len": np.uint32, "payload_len": np.uint32, "ttl": np.uint8, "ip_id": np.uint32, "frag": np.uint8,
    "tcp_flags": np.uint16, "tcp_seq": np.uint32, "tcp_ack": np.uint32, "tcp_win": np.uint16,
    "icmp_type": np.uint8, "icmp_code": np.uint8, "src_mac": np.uint64, "dst_mac": np.uint64,
}  # fmt: skip


class _Malformed(Exception):
    """A header that is cut short or inconsistent (decode.py's MALFORMED)."""


def _num(s: Any) -> int:
    """A tshark numeric field (decimal or ``0x`` hex text) → int."""
    if isinstance(s, list):  # a field repeated in one header: the first is the header's own
        s = s[0]
    if s is None:
        raise _Malformed
    if isinstance(s, bool):
        return int(s)
    s = str(s)
    return int(s, 16) if s.startswith("0x") else int(s)


def _ts_ns(epoch: str) -> int:
    """``frame.time_epoch`` text (``1300475167.096535000``) → integer ns, without float rounding."""
    neg = epoch.startswith("-")
    sec, _, frac = epoch.lstrip("-").partition(".")
    ns = int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])
    return -ns if neg else ns


def _layer(layers: dict[str, Any], name: str, k: int) -> dict:
    """The ``k``-th top-level occurrence of layer ``name`` (tshark merges repeats into a list)."""
    d = layers.get(name)
    if isinstance(d, list):
        if k >= len(d):
            raise _Malformed
        d = d[k]
    elif k > 0 or d is None:
        raise _Malformed
    if not isinstance(d, dict):
        raise _Malformed
    return d


def _sub(d: dict, key: str, k: int) -> dict:
    """The ``k``-th nested subtree ``key`` of a layer (IPv6 extension headers)."""
    v = d.get(key)
    if isinstance(v, list):
        v = v[k] if k < len(v) else None
    elif k > 0:
        v = None
    if not isinstance(v, dict):
        raise _Malformed
    return v


class _Frame:
    """A frame's protocol list (``frame.protocols``) read front to back, with its layers' field dictionaries."""

    def __init__(self, protos: list[str], layers: dict[str, Any]) -> None:
        self.protos, self.layers = protos, layers
        self.pos = 0
        self.seen: dict[str, int] = {}  # occurrences of each top-level layer so far

    def peek(self) -> str | None:
        """The next protocol, or None at the end."""
        return self.protos[self.pos] if self.pos < len(self.protos) else None

    def take(self) -> tuple[str, int]:
        """Consume the next top-level protocol: its name and how many of it came before."""
        name = self.protos[self.pos]
        k = self.seen.get(name, 0)
        self.seen[name] = k + 1
        self.pos += 1
        return name, k


@dataclass
class _Network:
    """The fields an IPv4/IPv6 header (with IPv6 extension headers) gives a row, and its L4 length."""

    ipver: int
    src: str | None
    dst: str | None
    proto: int
    ttl: int
    ipid: int
    frag: int  # 0 whole, 1 first fragment, 2 later fragment
    iplen: int
    l4len: int


class _Transport(NamedTuple):
    """The fields a TCP/UDP/ICMP header gives a row (zero where the protocol has none)."""

    sport: int = 0
    dport: int = 0
    flags: int = 0
    seq: int = 0
    ack: int = 0
    win: int = 0
    itype: int = 0
    icode: int = 0
    plen: int = 0


def _decode_frame(protos: list[str], layers: dict[str, Any]) -> tuple | ArpRow | str:
    """One frame's layers → ``(vni, vlan, ipver, src, dst, proto, sport, dport, iplen, plen, ttl, ipid,
    frag, flags, seq, ack, win, itype, icode, src_mac, dst_mac)``, an :class:`ArpRow`, or an outcome string
    (non-IP, malformed)."""
    frame = _Frame(protos, layers)
    vni = vlan = 0
    depth = 0
    while True:  # one iteration per encapsulation level
        net_layer, vlan = _skip_link_layers(frame, vlan, outer=depth == 0)
        if net_layer is None:
            return _NON_IP
        if net_layer[0] == "arp":
            macs = link_macs(layers, frame.seen.get("eth", 0))
            row = arp_row(_layer(layers, *net_layer), macs, vni, vlan)
            return _NON_IP if row is None else row
        d = _layer(layers, *net_layer)
        net = _ipv4(d) if net_layer[0] == "ip" else _ipv6(d, frame)
        if isinstance(net, str):
            return net
        if net.src is None or net.dst is None:
            return _MALFORMED
        l4 = _transport(frame, net)
        if isinstance(l4, str):
            return l4
        if net.proto == 17 and depth < _MAX_DEPTH and net.frag == 0 and frame.peek() is not None:
            inner_vni = _tunnel_vni(frame, l4.dport)
            if inner_vni is not None:
                vni = inner_vni
                depth += 1
                continue
        src_mac, dst_mac = link_macs(layers, frame.seen.get("eth", 0))
        return (vni, vlan, net.ipver, net.src, net.dst, net.proto, l4.sport, l4.dport, net.iplen, l4.plen, net.ttl,
                net.ipid, net.frag, l4.flags, l4.seq, l4.ack, l4.win, l4.itype, l4.icode, src_mac, dst_mac)  # fmt: skip


def _skip_link_layers(frame: _Frame, vlan: int, outer: bool) -> tuple[tuple[str, int] | None, int]:
    """Read link layers and VLAN tags up to the first IP or ARP header: ``((ip, ipv6 or arp, occurrence), vlan)``,
    or ``(None, vlan)`` when the frame carries neither. The outermost tag sets ``vlan`` (outside any tunnel only)."""
    while frame.peek() is not None:
        name, k = frame.take()
        if name in ("ip", "ipv6", "arp"):
            return (name, k), vlan
        if name not in _LINK_LAYERS:
            return None, vlan
        if name in ("vlan", "ieee8021ad") and outer and vlan == 0:
            tag = _layer(frame.layers, name, k)
            vlan = _num(tag.get(f"{name}_{name}_id")) & 0x0FFF
    return None, vlan


def _ipv4(d: dict) -> _Network | str:
    """An IPv4 header, or ``_MALFORMED``."""
    if _num(d.get("ip_ip_version")) != 4:
        return _MALFORMED
    ihl = _num(d.get("ip_ip_hdr_len"))
    tot = _num(d.get("ip_ip_len"))
    if ihl < 20 or tot < ihl:
        return _MALFORMED
    src, dst = d.get("ip_ip_src"), d.get("ip_ip_dst")
    proto = _num(d.get("ip_ip_proto"))
    ttl = _num(d.get("ip_ip_ttl"))
    ipid = _num(d.get("ip_ip_id"))
    if _num(d.get("ip_ip_frag_offset")) != 0:
        frag = 2
    elif d.get("ip_ip_flags_mf") is True:
        frag = 1
    else:
        frag = 0
    return _Network(4, src, dst, proto, ttl, ipid, frag, iplen=tot, l4len=tot - ihl)


def _ipv6(d: dict, frame: _Frame) -> _Network | str:
    """An IPv6 header and the extension headers after it (consumed from ``frame``), or ``_MALFORMED``."""
    if _num(d.get("ipv6_ipv6_version")) != 6:
        return _MALFORMED
    src, dst = d.get("ipv6_ipv6_src"), d.get("ipv6_ipv6_dst")
    payload = _num(d.get("ipv6_ipv6_plen"))
    proto = _num(d.get("ipv6_ipv6_nxt"))
    ttl = _num(d.get("ipv6_ipv6_hlim"))
    net = _Network(6, src, dst, proto, ttl, ipid=0, frag=0, iplen=40 + payload, l4len=payload)
    _ipv6_extensions(d, frame, net)
    return _MALFORMED if net.l4len < 0 else net


def _ipv6_extensions(d: dict, frame: _Frame, net: _Network) -> None:
    """Walk the extension headers (hop-by-hop, routing, destination, fragment, AH) nested in IPv6 header ``d``:
    each sets the next protocol and takes its length off the L4 length; a fragment header sets id and fragment."""
    ext: dict[str, int] = {}  # occurrences of each extension header inside this IPv6 header
    while frame.peek() in _V6_EXT or frame.peek() in ("ipv6.fraghdr", "ah"):
        name = frame.protos[frame.pos]
        key = _V6_EXT.get(name) or ("ipv6_fraghdr" if name == "ipv6.fraghdr" else "ah")
        k = ext.get(key, 0)
        ext[key] = k + 1
        frame.pos += 1
        h = _sub(d, key, k)
        if name == "ipv6.fraghdr":
            p = "ipv6_fraghdr_ipv6_fraghdr_"
            net.ipid = _num(h.get(p + "ident"))
            if _num(h.get(p + "offset")) != 0:
                net.frag = 2
            elif h.get(p + "more") is True:
                net.frag = 1
            net.proto = _num(h.get(p + "nxt"))
            net.l4len -= 8
        elif name == "ah":
            net.proto = _num(h.get("ah_ah_next_header"))
            net.l4len -= (_num(h.get("ah_ah_length")) + 2) * 4
        else:
            p = f"{key}_{key}_"
            net.proto = _num(h.get(p + "nxt"))
            net.l4len -= _num(h.get(p + "len_oct"))


def _transport(frame: _Frame, net: _Network) -> _Transport | str:
    """The TCP/UDP/ICMP header after ``net`` (none in later fragments or for other protocols), or ``_MALFORMED``."""
    l4 = _L4_LAYER.get(net.proto)
    if net.frag == 2 or l4 is None:
        return _Transport(plen=net.l4len)
    if frame.peek() != l4:
        return _MALFORMED  # tshark could not dissect the header (cut short)
    _, k = frame.take()
    t = _layer(frame.layers, l4, k)
    if net.proto == 6:
        return _tcp(t, net.l4len)
    if net.proto == 17:
        return _udp(t, net.l4len)
    return _icmp(t, l4, net.proto, net.l4len)


def _tcp(t: dict, l4len: int) -> _Transport | str:
    doff = _num(t.get("tcp_tcp_hdr_len"))
    if l4len < 20 or doff < 20 or doff > l4len:
        return _MALFORMED
    return _Transport(
        sport=_num(t.get("tcp_tcp_srcport")),
        dport=_num(t.get("tcp_tcp_dstport")),
        seq=_num(t.get("tcp_tcp_seq_raw")),
        ack=_num(t.get("tcp_tcp_ack_raw")),
        flags=_num(t.get("tcp_tcp_flags")) & 0x1FF,
        win=_num(t.get("tcp_tcp_window_size_value")),
        plen=l4len - doff,
    )


def _udp(t: dict, l4len: int) -> _Transport | str:
    if l4len < 8:
        return _MALFORMED
    return _Transport(sport=_num(t.get("udp_udp_srcport")), dport=_num(t.get("udp_udp_dstport")), plen=l4len - 8)


def _icmp(t: dict, l4: str, proto: int, l4len: int) -> _Transport | str:
    """ICMP / ICMPv6: type and code; an echo's identifier stands in for both ports (as decode.py)."""
    if l4len < 4:
        return _MALFORMED
    p = f"{l4}_{l4}_"
    itype = _num(t.get(p + "type"))
    icode = _num(t.get(p + "code"))
    plen = l4len - 8 if l4len >= 8 else 0
    sport = dport = 0
    ident = t.get("icmp_icmp_ident" if proto == 1 else "icmpv6_icmpv6_echo_identifier")
    if ident is not None and (itype in (0, 8) if proto == 1 else itype in (128, 129)):
        sport = dport = _num(ident)
    return _Transport(sport=sport, dport=dport, itype=itype, icode=icode, plen=plen)


def _tunnel_vni(frame: _Frame, dport: int) -> int | None:
    """The VNI of a VXLAN (I flag set) or Geneve (version 0, Ethernet/IP payload) header next in ``frame``,
    consuming it; None when the UDP datagram carries no tunnel to decapsulate."""
    tunnel = frame.peek()
    if dport == VXLAN_PORT and tunnel == "vxlan":
        vx = _layer(frame.layers, "vxlan", frame.seen.get("vxlan", 0))
        if vx.get("vxlan_vxlan_flag_i") is True:
            frame.take()
            return _num(vx.get("vxlan_vxlan_vni"))
    elif dport == GENEVE_PORT and tunnel == "geneve":
        gn = _layer(frame.layers, "geneve", frame.seen.get("geneve", 0))
        ptype = _num(gn.get("geneve_geneve_proto_type"))
        if _num(gn.get("geneve_geneve_version")) == 0 and ptype in (0x6558, 0x0800, 0x86DD):
            frame.take()
            return _num(gn.get("geneve_geneve_vni"))
    return None


def _ip16(addrs: list[str]) -> np.ndarray:
    """Text addresses → ``(n, 16)`` uint8, converting each distinct address once."""
    index: dict[str, int] = {}
    pos = np.fromiter((index.setdefault(a, len(index)) for a in addrs), dtype=np.int64, count=len(addrs))
    return ip16_from_text(list(index))[pos]


def pkt_hash(cols: dict[str, np.ndarray]) -> np.ndarray:
    """``pkt_hash`` exactly as :func:`netsentry.pipeline.capture.decode.decode` computes it, vectorized."""
    n = len(cols["proto"])
    u64 = np.uint64
    src, dst = cols["src_ip"], cols["dst_ip"]
    h = np.full(n, FNV1A64_OFFSET, dtype=u64)
    with np.errstate(over="ignore"):
        for k in range(16):
            h = (h ^ src[:, k].astype(u64)) * FNV1A64_PRIME
            h = (h ^ dst[:, k].astype(u64)) * FNV1A64_PRIME
        ports = (cols["src_port"].astype(u64) << u64(16)) | cols["dst_port"].astype(u64)
        tail = [cols["proto"], cols["ip_id"], cols["ip_len"], ports]
        for v in [*tail, cols["tcp_seq"], cols["tcp_ack"]]:
            h = (h ^ v.astype(u64)) * FNV1A64_PRIME
    return finalize64(h, MURMUR3_FMIX64)


def _batch_table(rows: list[tuple], capture_point: str, stats: CaptureStats,
                 port_vnis: PortVnis | None = None) -> pa.Table:  # fmt: skip
    """Rows of primitive values → one table in the packets contract (VNIs filled by ``port_vnis``, as
    :func:`~netsentry.pipeline.capture.reader.read_capture` does); updates ``stats``."""
    cols: dict[str, np.ndarray] = {}
    for name, values in zip(_COLUMNS, zip(*rows, strict=True), strict=True):
        if name in ("src_ip", "dst_ip"):
            cols[name] = _ip16(list(values))
        else:
            cols[name] = np.array(values, dtype=_DTYPES[name])
    cols["pkt_hash"] = pkt_hash(cols)
    if port_vnis is not None:
        cols["vni"] = port_vnis(cols["vni"], cols["src_mac"], cols["src_ip"], cols["dst_mac"], cols["dst_ip"])
    stats.count_kept(cols)
    return columns_to_table(cols, capture_point)


def _file_format(path: Path) -> str:
    """``pcap`` / ``pcapng`` as the fast reader reports it (looking inside gzip), else ``other``."""
    with path.open("rb") as f:
        magic = f.read(4)
    if magic[:2] == GZIP_MAGIC:
        try:
            with gzip.open(path, "rb") as g:
                magic = g.read(4)
        except OSError:
            return "other"
    if magic == PCAPNG_MAGIC:
        return "pcapng"
    return "pcap" if magic in PCAP_MAGICS else "other"


def _tshark_path() -> str:
    from pyshark.tshark.tshark import TSharkNotFoundException, get_process_path

    try:
        return get_process_path()
    except TSharkNotFoundException:
        raise ToolMissingError(INSTALL_HINT) from None


def _preload_ek_mapping() -> None:
    """Load pyshark's cached EK field-type map with the file closed (pyshark leaves it open and the
    ResourceWarning surfaces at some later garbage collection); pyshark builds the cache itself."""
    from pyshark import cache, ek_field_mapping
    from pyshark.tshark.tshark import get_tshark_version

    mapping = ek_field_mapping.MAPPING
    if mapping._protocol_to_mapping:
        return
    cached = cache.get_cache_dir(str(get_tshark_version())).joinpath("ek_field_mapping.json")
    if cached.exists():
        with cached.open() as f:
            mapping._protocol_to_mapping = json.load(f)


def _file_capture_class() -> type:
    """``pyshark.FileCapture`` that reports tshark's exit instead of raising from its cleanup."""
    import pyshark

    class _FileCapture(pyshark.FileCapture):
        tshark_returncode: int | None = None
        tshark_stderr: list[str]

        async def _cleanup_subprocess(self, process: asyncio.subprocess.Process) -> None:
            # After EOF tshark is exiting on its own: wait for its status. Killing it then would reap
            # it behind asyncio's child watcher (Popen.send_signal polls first) and lose the status.
            if process.returncode is None and self._eof_reached:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), 30)
            if process.returncode is None:  # stopped early: tshark is still writing
                try:
                    process.kill()
                    await asyncio.wait_for(process.wait(), 5)
                except (ProcessLookupError, TimeoutError):
                    log.debug("tshark (pid %d) did not exit after SIGKILL", process.pid)
            else:
                self.tshark_returncode = process.returncode
            self._running_processes.discard(process)

        async def _handle_process_stderr_forever(self, stderr: asyncio.StreamReader) -> None:
            self.tshark_stderr = []
            while line := await stderr.readline():
                text = line.decode(errors="replace").strip()
                if text and "dangerous" not in text:  # "Running as user root ..." is noise
                    self.tshark_stderr.append(text)
                    log.debug("tshark: %s", text)

    return _FileCapture


def read_packets_pyshark(path: str | Path, **options: Any) -> Iterator[pa.Table]:
    """The packet tables of :func:`read_capture_pyshark` (same options); ARP frames are counted, not kept."""
    for batch in read_capture_pyshark(path, **options):
        if batch.packets is not None:
            yield batch.packets


def read_capture_pyshark(
    path: str | Path,
    *,
    capture_point: str | None = None,
    stats: CaptureStats | None = None,
    batch_size: int = 50_000,
    on_progress: Callable[[int], None] | None = None,
    port_vnis: PortVnis | None = None,
) -> Iterator[CaptureBatch]:
    """Stream a capture file read by tshark (through pyshark) as packet and ARP tables, updating ``stats``;
    ``on_progress(bytes)`` gets an estimate of the file bytes read so far (record sizes).

    Same columns and values as :func:`netsentry.pipeline.capture.reader.read_capture`; frames without IP are
    counted in ``stats.non_ip`` (Ethernet/IPv4 ARP kept and counted in ``stats.arp`` too), inconsistent
    headers in ``stats.malformed``.
    """
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError("no such file", path=str(path))
    if path.stat().st_size == 0:
        raise CaptureFormatError("empty file; expected a pcap or pcapng capture", path=str(path))
    _tshark_path()
    _preload_ek_mapping()
    stats = stats if stats is not None else CaptureStats(path=str(path))
    stats.format = _file_format(path)
    cp = capture_point or path.name
    loop = asyncio.new_event_loop()
    cap = _file_capture_class()(
        str(path),
        keep_packets=False,
        use_ek=True,
        eventloop=loop,
        override_prefs=TSHARK_PREFS,
        custom_parameters=["-J", TSHARK_LAYERS],
    )
    packets = iter(cap)
    rows: list[tuple] = []
    arp_rows: list[ArpRow] = []
    done_bytes = 0
    try:
        for pkt in packets:
            row = _frame_row(pkt, stats)
            if row is None:
                continue
            if isinstance(row, ArpRow):
                arp_rows.append(row)
            else:
                rows.append(row)
                done_bytes += row[2] + 16
            if len(rows) >= batch_size or len(arp_rows) >= batch_size:
                yield _batch(rows, arp_rows, cp, stats, port_vnis)
                rows, arp_rows = [], []
                if on_progress is not None:
                    on_progress(done_bytes)
        if rows or arp_rows:
            yield _batch(rows, arp_rows, cp, stats, port_vnis)
        if on_progress is not None:
            on_progress(path.stat().st_size)
    finally:
        packets.close()  # kills tshark if the caller stopped early
        cap.close()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    _check_exit(cap, path, stats)


def _frame_row(pkt: Any, stats: CaptureStats) -> tuple | ArpRow | None:
    """One pyshark packet → its packet row ``(ts, frame_len, cap_len, …)`` or ARP row, or None (counted in
    ``stats``: non-IP, malformed, unsupported link type)."""
    stats.records += 1
    frame = pkt.frame_info._fields_dict
    linktype = WTAP_TO_LINKTYPE.get(_num(frame.get("frame_frame_encap_type")))
    if linktype is None:
        stats.unsupported_linktype += 1
        return None
    stats.linktypes.add(linktype)
    layers = {layer.layer_name: layer._fields_dict for layer in pkt.layers}
    try:
        out = _decode_frame(frame["frame_frame_protocols"].split(":"), layers)
    except (_Malformed, ValueError, TypeError):
        out = _MALFORMED
    if out == _NON_IP:
        stats.count_non_ip(1, 0)
        return None
    if isinstance(out, str):
        stats.malformed += 1
        return None
    ts = _ts_ns(frame["frame_frame_time_epoch"])
    if isinstance(out, ArpRow):
        stats.count_non_ip(1, 1)
        return out._replace(ts_ns=ts)
    return (ts, int(frame["frame_frame_len"]), int(frame["frame_frame_cap_len"]), *out)


def _batch(rows: list[tuple], arp_rows: list[ArpRow], capture_point: str, stats: CaptureStats,
           port_vnis: PortVnis | None = None) -> CaptureBatch:  # fmt: skip
    return CaptureBatch(
        _batch_table(rows, capture_point, stats, port_vnis) if rows else None,
        arp_batch(arp_rows, capture_point) if arp_rows else None,
    )


def _check_exit(cap: Any, path: Path, stats: CaptureStats) -> None:
    """Unreadable file → :class:`CaptureFormatError`; a file that breaks off later (corrupt or cut
    short) keeps the packets before it, with a warning (tshark does not say how many bytes it skipped)."""
    rc = cap.tshark_returncode
    if not rc:
        return
    lines = getattr(cap, "tshark_stderr", None) or [f"exit status {rc}"]
    message = re.sub(r'^(tshark: )?(The file ".*?" )?', "", lines[-1])
    if stats.records == 0:
        raise CaptureFormatError(f"tshark cannot read it: {message}", path=str(path))
    log.warning("%s: tshark stopped after %d records: %s", path, stats.records, message)
