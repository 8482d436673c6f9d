"""Dependency-free builder of test captures (struct only; no scapy).

One small function per header, each returning ``bytes`` with lengths and checksums filled
in, so tshark decodes the result without complaint. Compose them inside out::

    seg = tcp("10.0.0.1", "10.0.0.2", 40000, 80, flags=SYN, seq=1)
    frame = ethernet(ipv4("10.0.0.1", "10.0.0.2", TCP, seg), vlans=[100])
    write_pcap(path, [Record(frame, ts_ns=1_700_000_000_000_000_000)])

Addresses are text (``"10.0.0.1"``, ``"2001:db8::1"``, ``"02:00:00:00:00:01"``). Transport
builders take the IP source and destination because their checksum covers a pseudo-header.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# EtherTypes
ETH_IPV4, ETH_ARP, ETH_IPV6 = 0x0800, 0x0806, 0x86DD
ETH_8021Q, ETH_8021AD, ETH_TEB = 0x8100, 0x88A8, 0x6558

# IP protocol numbers (IPv6 extension headers included)
HOPOPTS, ICMP, TCP, UDP, ROUTING, FRAGMENT, ICMPV6, NO_NEXT, DSTOPTS = 0, 1, 6, 17, 43, 44, 58, 59, 60

# TCP flags
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, NS = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x100

# Link types (tcpdump.org/linktypes.html)
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_SLL, LINKTYPE_SLL2 = 0, 1, 101, 113, 276

# Address families in a BSD loopback header
AF_INET, AF_INET6_LINUX, AF_INET6_BSD, AF_INET6_FREEBSD, AF_INET6_DARWIN = 2, 10, 24, 28, 30

VXLAN_PORT, GENEVE_PORT = 4789, 6081

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


# ---------------------------------------------------------------- helpers


def checksum(data: bytes) -> int:
    """Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac(text: str) -> bytes:
    """``"02:00:00:00:00:01"`` → 6 bytes."""
    return bytes.fromhex(text.replace(":", ""))


def ip_bytes(text: str) -> bytes:
    """Text IPv4/IPv6 address → 4 or 16 bytes."""
    return ipaddress.ip_address(text).packed


def _put16(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("!H", value) + data[at + 2 :]


def _pseudo_header(src: str, dst: str, proto: int, length: int) -> bytes:
    s, d = ip_bytes(src), ip_bytes(dst)
    if len(s) == 4:
        return s + d + struct.pack("!BBH", 0, proto, length)
    return s + d + struct.pack("!I3xB", length, proto)


def _l4_checksum(segment: bytes, at: int, src: str, dst: str, proto: int) -> bytes:
    """Fill the checksum field at offset ``at`` of a transport segment."""
    c = checksum(_pseudo_header(src, dst, proto, len(segment)) + segment)
    if proto == UDP and c == 0:
        c = 0xFFFF
    return _put16(segment, at, c)


def _pad(data: bytes, align: int) -> bytes:
    return data + b"\x00" * (-len(data) % align)


# ---------------------------------------------------------------- link layers


def ethernet(
    payload: bytes,
    ethertype: int = ETH_IPV4,
    *,
    src: str = MAC_A,
    dst: str = MAC_B,
    vlans: Sequence[int] = (),
    qinq: bool = False,
) -> bytes:
    """Ethernet II frame. ``vlans`` lists VLAN ids outermost first (802.1Q tags);
    with ``qinq`` the outermost tag is an 802.1ad service tag (TPID 0x88A8)."""
    tags = b""
    for i, vid in enumerate(vlans):
        tpid = ETH_8021AD if qinq and i == 0 else ETH_8021Q
        tags += struct.pack("!HH", tpid, vid & 0x0FFF)
    return mac(dst) + mac(src) + tags + struct.pack("!H", ethertype) + payload


ARP_REQUEST, ARP_REPLY = 1, 2
MAC_ZERO, MAC_BROADCAST = "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"


def arp_body(
    op: int, sender_hw: bytes, sender_proto: bytes, target_hw: bytes, target_proto: bytes, *, htype: int = 1,
    ptype: int = ETH_IPV4,
) -> bytes:  # fmt: skip
    """Any ARP packet (the payload of an Ethernet frame of type 0x0806): address sizes from the addresses given."""
    head = struct.pack("!HHBBH", htype, ptype, len(sender_hw), len(sender_proto), op)
    return head + sender_hw + sender_proto + target_hw + target_proto


def arp(op: int, sender_ip: str, target_ip: str, *, sender_mac: str = MAC_A, target_mac: str = MAC_ZERO) -> bytes:
    """An Ethernet/IPv4 ARP packet (``op`` 1 request, 2 reply)."""
    return arp_body(op, mac(sender_mac), ip_bytes(sender_ip), mac(target_mac), ip_bytes(target_ip))


def arp_request(sender_ip: str, target_ip: str, *, sender_mac: str = MAC_A) -> bytes:
    """ARP who-has ``target_ip``, tell ``sender_ip`` (target MAC zero, as a host sends it)."""
    return arp(ARP_REQUEST, sender_ip, target_ip, sender_mac=sender_mac)


def arp_reply(sender_ip: str, target_ip: str, *, sender_mac: str, target_mac: str) -> bytes:
    """ARP ``sender_ip`` is-at ``sender_mac``, sent to the asker (``target_ip`` at ``target_mac``)."""
    return arp(ARP_REPLY, sender_ip, target_ip, sender_mac=sender_mac, target_mac=target_mac)


def gratuitous_arp(ip: str, *, sender_mac: str, reply: bool = False) -> bytes:
    """A gratuitous ARP: ``sender_mac`` announces (or claims) ``ip``, sender and target address both ``ip``."""
    op = ARP_REPLY if reply else ARP_REQUEST
    return arp(op, ip, ip, sender_mac=sender_mac, target_mac=MAC_BROADCAST if reply else MAC_ZERO)


def sll(payload: bytes, protocol: int = ETH_IPV4, *, pkttype: int = 0, hatype: int = 1, addr: str = MAC_A) -> bytes:
    """Linux cooked capture v1 header (16 bytes, link type 113)."""
    a = mac(addr)
    return struct.pack("!HHH8sH", pkttype, hatype, len(a), a, protocol) + payload


def sll2(
    payload: bytes,
    protocol: int = ETH_IPV4,
    *,
    ifindex: int = 2,
    hatype: int = 1,
    pkttype: int = 0,
    addr: str = MAC_A,
) -> bytes:
    """Linux cooked capture v2 header (20 bytes, link type 276)."""
    a = mac(addr)
    return struct.pack("!HHIHBB8s", protocol, 0, ifindex, hatype, pkttype, len(a), a) + payload


def null_loopback(payload: bytes, family: int = AF_INET, *, big_endian: bool = False) -> bytes:
    """BSD loopback header (link type 0): the address family in the capturing host's byte order."""
    return struct.pack(">I" if big_endian else "<I", family) + payload


# ---------------------------------------------------------------- IPv4


def ipv4(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    *,
    ttl: int = 64,
    ident: int = 0,
    tos: int = 0,
    df: bool = False,
    mf: bool = False,
    frag_offset: int = 0,
    options: bytes = b"",
    total_length: int | None = None,
) -> bytes:
    """IPv4 packet with a correct header checksum. ``frag_offset`` is in bytes (a multiple of 8);
    ``options`` are padded with end-of-list bytes to a multiple of 4."""
    options = _pad(options, 4)
    ihl = 5 + len(options) // 4
    flags = (0x4000 if df else 0) | (0x2000 if mf else 0) | (frag_offset // 8)
    tot = 20 + len(options) + len(payload) if total_length is None else total_length
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, tot, ident, flags, ttl, proto, 0, ip_bytes(src), ip_bytes(dst))
    hdr += options
    return _put16(hdr, 10, checksum(hdr)) + payload


def router_alert() -> bytes:
    """IPv4 Router Alert option (RFC 2113), 4 bytes."""
    return bytes([0x94, 0x04, 0x00, 0x00])


def ipv4_fragments(
    src: str, dst: str, proto: int, payload: bytes, *, size: int, ident: int, ttl: int = 64
) -> list[bytes]:
    """Split a transport segment into IPv4 fragments carrying ``size`` bytes each (a multiple of 8)."""
    assert size % 8 == 0
    pieces = [payload[i : i + size] for i in range(0, len(payload), size)]
    return [
        ipv4(src, dst, proto, piece, ident=ident, ttl=ttl, mf=k < len(pieces) - 1, frag_offset=k * size)
        for k, piece in enumerate(pieces)
    ]


# ---------------------------------------------------------------- IPv6


def ipv6(
    src: str,
    dst: str,
    next_header: int,
    payload: bytes,
    *,
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow: int = 0,
) -> bytes:
    """IPv6 packet; ``payload`` starts with any extension headers (``next_header`` names the first)."""
    first = (6 << 28) | (traffic_class << 20) | flow
    return struct.pack("!IHBB", first, len(payload), next_header, hop_limit) + ip_bytes(src) + ip_bytes(dst) + payload


def _tlv_options(next_header: int, options: bytes) -> bytes:
    """Hop-by-hop / destination options header: TLV options padded (Pad1/PadN) to 8 bytes."""
    pad = -(2 + len(options)) % 8
    if pad == 1:
        options += b"\x00"
    elif pad:
        options += bytes([1, pad - 2]) + b"\x00" * (pad - 2)
    return bytes([next_header, (2 + len(options)) // 8 - 1]) + options


def hop_by_hop(next_header: int, options: bytes = b"") -> bytes:
    """IPv6 hop-by-hop options extension header (default: padding only)."""
    return _tlv_options(next_header, options)


def dest_options(next_header: int, options: bytes = b"") -> bytes:
    """IPv6 destination options extension header (default: padding only)."""
    return _tlv_options(next_header, options)


def routing_header(next_header: int, segments: Sequence[str] = (), *, routing_type: int = 4) -> bytes:
    """IPv6 segment routing header (type 4) with ``segments_left = 0``: the IPv6 destination stays final."""
    body = b"".join(ip_bytes(s) for s in segments)
    last = max(len(segments) - 1, 0)
    return struct.pack("!BBBBBBH", next_header, len(body) // 8, routing_type, 0, last, 0, 0) + body


def fragment_header(next_header: int, *, offset: int, more: bool, ident: int) -> bytes:
    """IPv6 fragment extension header; ``offset`` in bytes (a multiple of 8)."""
    return struct.pack("!BBHI", next_header, 0, (offset // 8) << 3 | int(more), ident)


# ---------------------------------------------------------------- transport


def tcp_options(
    *,
    mss: int | None = None,
    wscale: int | None = None,
    sack_ok: bool = False,
    timestamps: tuple[int, int] | None = None,
) -> bytes:
    """TCP options (MSS, SACK-permitted, timestamps, window scale), NOP-aligned."""
    out = b""
    if mss is not None:
        out += struct.pack("!BBH", 2, 4, mss)
    if sack_ok:
        out += b"\x01\x01\x04\x02"
    if timestamps is not None:
        out += b"\x01\x01" + struct.pack("!BBII", 8, 10, *timestamps)
    if wscale is not None:
        out += struct.pack("!BBBB", 1, 3, 3, wscale)
    return out


def tcp(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    *,
    seq: int = 0,
    ack: int = 0,
    flags: int = ACK,
    window: int = 65535,
    options: bytes = b"",
    payload: bytes = b"",
    urgent: int = 0,
) -> bytes:
    """TCP segment with its checksum over the ``src``/``dst`` pseudo-header; ``flags`` may include NS."""
    options = _pad(options, 4)
    doff = (20 + len(options)) // 4
    hdr = struct.pack(
        "!HHIIBBHHH", sport, dport, seq, ack, (doff << 4) | (flags >> 8 & 1), flags & 0xFF, window, 0, urgent
    )
    return _l4_checksum(hdr + options + payload, 16, src, dst, TCP)


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"") -> bytes:
    """UDP datagram with its checksum over the ``src``/``dst`` pseudo-header."""
    return _l4_checksum(struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload, 6, src, dst, UDP)


def icmp_echo(ident: int, seq: int, payload: bytes = b"", *, reply: bool = False) -> bytes:
    """ICMP echo request (type 8) or reply (type 0)."""
    msg = struct.pack("!BBHHH", 0 if reply else 8, 0, 0, ident, seq) + payload
    return _put16(msg, 2, checksum(msg))


def icmp_unreachable(quoted: bytes, code: int = 3) -> bytes:
    """ICMP destination unreachable (type 3; code 3 = port unreachable) quoting an IP header + 8 bytes."""
    msg = struct.pack("!BBHI", 3, code, 0, 0) + quoted
    return _put16(msg, 2, checksum(msg))


def icmpv6_echo(src: str, dst: str, ident: int, seq: int, payload: bytes = b"", *, reply: bool = False) -> bytes:
    """ICMPv6 echo request (128) or reply (129), checksummed over the pseudo-header."""
    msg = struct.pack("!BBHHH", 129 if reply else 128, 0, 0, ident, seq) + payload
    return _l4_checksum(msg, 2, src, dst, ICMPV6)


# ---------------------------------------------------------------- overlays


def vxlan(vni: int, inner_frame: bytes) -> bytes:
    """VXLAN header (flags I, 24-bit VNI) + an inner Ethernet frame: the payload of UDP port 4789."""
    return struct.pack("!B3xI", 0x08, vni << 8) + inner_frame


def geneve_option(opt_class: int, opt_type: int, data: bytes) -> bytes:
    """One Geneve TLV option; ``data`` is padded to a multiple of 4 bytes."""
    data = _pad(data, 4)
    assert len(data) <= 124, "a Geneve option carries at most 31 words"
    return struct.pack("!HBB", opt_class, opt_type, len(data) // 4) + data


def geneve(vni: int, inner: bytes, *, protocol: int = ETH_TEB, options: Sequence[bytes] = ()) -> bytes:
    """Geneve header (+ options from :func:`geneve_option`) + inner payload: the payload of UDP port 6081.
    ``protocol`` is 0x6558 for an inner Ethernet frame, or an IP ethertype for a bare IP packet."""
    opts = b"".join(options)
    assert len(opts) <= 252, "Geneve options total at most 63 words"
    return struct.pack("!BBHI", len(opts) // 4, 0, protocol, vni << 8) + opts + inner


# ---------------------------------------------------------------- writers


@dataclass(frozen=True)
class Record:
    """One captured frame: bytes as captured, wire length (default: as captured), interface (pcapng)."""

    data: bytes
    ts_ns: int = 0
    orig_len: int | None = None
    iface: int = 0

    @property
    def wire_len(self) -> int:
        return len(self.data) if self.orig_len is None else self.orig_len


def pcap_header(linktype: int, *, big_endian: bool = False, nanosecond: bool = False, snaplen: int = 262144) -> bytes:
    """Classic pcap file header (24 bytes)."""
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    return struct.pack((">" if big_endian else "<") + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(rec: Record, *, big_endian: bool = False, nanosecond: bool = False) -> bytes:
    """Classic pcap record header (16 bytes) + data."""
    sec, frac = divmod(rec.ts_ns, 1_000_000_000)
    if not nanosecond:
        frac //= 1000
    e = ">" if big_endian else "<"
    return struct.pack(e + "IIII", sec, frac, len(rec.data), rec.wire_len) + rec.data


def pcap_bytes(
    records: Iterable[Record],
    linktype: int = LINKTYPE_ETHERNET,
    *,
    big_endian: bool = False,
    nanosecond: bool = False,
    snaplen: int = 262144,
) -> bytes:
    """A whole classic pcap file."""
    out = [pcap_header(linktype, big_endian=big_endian, nanosecond=nanosecond, snaplen=snaplen)]
    out += [pcap_record(r, big_endian=big_endian, nanosecond=nanosecond) for r in records]
    return b"".join(out)


def write_pcap(
    path: Path,
    records: Iterable[Record],
    linktype: int = LINKTYPE_ETHERNET,
    *,
    big_endian: bool = False,
    nanosecond: bool = False,
    snaplen: int = 262144,
) -> Path:
    """Write a classic pcap file (see :func:`pcap_bytes`); return ``path``."""
    data = pcap_bytes(records, linktype, big_endian=big_endian, nanosecond=nanosecond, snaplen=snaplen)
    path.write_bytes(data)
    return path


def pcap_timestamp_ns(ts_ns: int, *, nanosecond: bool = False) -> int:
    """The timestamp a reader should report for ``ts_ns`` stored in a pcap of that resolution."""
    return ts_ns if nanosecond else ts_ns // 1000 * 1000


# pcapng -------------------------------------------------------------------


@dataclass(frozen=True)
class Interface:
    """A pcapng interface: link type, ``if_tsresol`` (None = default 6, i.e. µs), snap length."""

    linktype: int
    tsresol: int | None = None
    snaplen: int = 0


def pcapng_block(btype: int, body: bytes, *, big_endian: bool = False) -> bytes:
    """Generic pcapng block: type, total length, body padded to 4 bytes, total length."""
    e = ">" if big_endian else "<"
    body = _pad(body, 4)
    total = 12 + len(body)
    return struct.pack(e + "II", btype, total) + body + struct.pack(e + "I", total)


def pcapng_option(code: int, value: bytes, *, big_endian: bool = False) -> bytes:
    """One pcapng option (code, length, value padded to 4 bytes)."""
    return struct.pack((">" if big_endian else "<") + "HH", code, len(value)) + _pad(value, 4)


def pcapng_shb(*, big_endian: bool = False) -> bytes:
    """Section header block (version 1.0, section length unknown)."""
    body = struct.pack((">" if big_endian else "<") + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    return pcapng_block(0x0A0D0D0A, body, big_endian=big_endian)


def pcapng_idb(iface: Interface, *, big_endian: bool = False) -> bytes:
    """Interface description block, with an ``if_tsresol`` option when one is set."""
    e = ">" if big_endian else "<"
    body = struct.pack(e + "HHI", iface.linktype, 0, iface.snaplen)
    if iface.tsresol is not None:
        body += pcapng_option(9, bytes([iface.tsresol]), big_endian=big_endian)
        body += pcapng_option(0, b"", big_endian=big_endian)
    return pcapng_block(1, body, big_endian=big_endian)


def pcapng_epb(
    iface: int, ts_units: int, data: bytes, *, orig_len: int | None = None, big_endian: bool = False
) -> bytes:
    """Enhanced packet block; ``ts_units`` counts the interface's timestamp units."""
    e = ">" if big_endian else "<"
    olen = len(data) if orig_len is None else orig_len
    body = struct.pack(e + "IIIII", iface, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), olen) + data
    return pcapng_block(6, body, big_endian=big_endian)


def pcapng_spb(data: bytes, *, orig_len: int | None = None, big_endian: bool = False) -> bytes:
    """Simple packet block (interface 0, no timestamp)."""
    olen = len(data) if orig_len is None else orig_len
    return pcapng_block(3, struct.pack((">" if big_endian else "<") + "I", olen) + data, big_endian=big_endian)


def ts_units(ts_ns: int, tsresol: int | None) -> int:
    """Nanoseconds → timestamp units of an ``if_tsresol`` (10^-n s, or 2^-n s when bit 7 is set)."""
    res = 6 if tsresol is None else tsresol
    if res & 0x80:
        return ts_ns * (1 << (res & 0x7F)) // 10**9
    return ts_ns * 10**res // 10**9


def units_ns(units: int, tsresol: int | None) -> int:
    """Timestamp units → nanoseconds (rounded down), what a reader should report."""
    res = 6 if tsresol is None else tsresol
    if res & 0x80:
        return units * 10**9 // (1 << (res & 0x7F))
    return units * 10**9 // 10**res


def pcapng_bytes(
    interfaces: Sequence[Interface],
    records: Iterable[Record],
    *,
    big_endian: bool = False,
    simple: Sequence[bytes] = (),
) -> bytes:
    """A whole pcapng file: SHB, one IDB per interface, an EPB per record, then SPBs for ``simple``."""
    out = [pcapng_shb(big_endian=big_endian)]
    out += [pcapng_idb(i, big_endian=big_endian) for i in interfaces]
    for r in records:
        res = interfaces[r.iface].tsresol if r.iface < len(interfaces) else None
        out.append(pcapng_epb(r.iface, ts_units(r.ts_ns, res), r.data, orig_len=r.orig_len, big_endian=big_endian))
    out += [pcapng_spb(d, big_endian=big_endian) for d in simple]
    return b"".join(out)


def write_pcapng(
    path: Path,
    interfaces: Sequence[Interface],
    records: Iterable[Record],
    *,
    big_endian: bool = False,
    simple: Sequence[bytes] = (),
) -> Path:
    """Write a pcapng file (see :func:`pcapng_bytes`); return ``path``."""
    path.write_bytes(pcapng_bytes(interfaces, records, big_endian=big_endian, simple=simple))
    return path
