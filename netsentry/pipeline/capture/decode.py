"""Header decoder: link layer → VLAN → IPv4/IPv6 (extension headers) → TCP/UDP/ICMP, with
VXLAN and Geneve decapsulation, and ARP for Ethernet/IPv4. Compiled with numba; one pass over the
records of a chunk, writing fixed-width columns. No payload byte is copied out.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from netsentry.pipeline.core.hashing import FNV1A64_OFFSET, FNV1A64_PRIME, MURMUR3_FMIX64, finalize64

# Per-packet status.
OK = 0
NON_IP = 1  # a frame that carries neither an IP packet nor Ethernet/IPv4 ARP (LLDP, other ARP, ...): counted, not kept
MALFORMED = 2  # headers cut short or inconsistent: counted, not kept
BAD_LINKTYPE = 3  # link type this decoder does not know: counted, not kept
ARP = 4  # an Ethernet/IPv4 ARP frame: its fields are in the ARP columns, the IP columns are not set
N_STATUS = 5

ETHERTYPE_ARP = 0x0806
ARP_LEN = 28  # the ARP body for Ethernet/IPv4: 8 bytes of header, 2 × (6-byte MAC + 4-byte IPv4)

# Link types (tcpdump.org/linktypes.html).
LT_NULL, LT_ETHERNET, LT_RAW, LT_LOOP, LT_SLL, LT_IPV4, LT_IPV6, LT_SLL2 = 0, 1, 101, 108, 113, 228, 229, 276
SUPPORTED_LINKTYPES = {
    LT_NULL: "BSD loopback",
    LT_ETHERNET: "Ethernet",
    LT_RAW: "raw IP",
    12: "raw IP",
    14: "raw IP",
    LT_LOOP: "OpenBSD loopback",
    LT_SLL: "Linux cooked v1",
    LT_SLL2: "Linux cooked v2",
    LT_IPV4: "raw IPv4",
    LT_IPV6: "raw IPv6",
}

VXLAN_PORT = 4789
GENEVE_PORT = 6081

# Pseudo link types used internally after decapsulation.
_L_IP = 1000  # version nibble decides
_L_ETHERTYPE = 1001  # `et` holds an ethertype, header at p


@nb.njit(inline="always", cache=True)
def _be16(b, p):
    return (np.int64(b[p]) << 8) | np.int64(b[p + 1])


@nb.njit(inline="always", cache=True)
def _be32(b, p):
    return (np.int64(b[p]) << 24) | (np.int64(b[p + 1]) << 16) | (np.int64(b[p + 2]) << 8) | np.int64(b[p + 3])


@nb.njit(inline="always", cache=True)
def _mac48(b, p):
    return (_be16(b, p) << 32) | _be32(b, p + 2)


@nb.njit(inline="always", cache=True)
def _mix(h, v):
    return (h ^ np.uint64(v)) * FNV1A64_PRIME


@nb.njit(cache=True)
def decode(b, off, cap, orig, lt, st, vni, vlan, ipver, src, dst, proto, sport, dport, iplen, plen,
           ttl, ipid, frag, tflags, seq, ack, win, itype, icode, phash,
           arp_op, src_mac, dst_mac, sender_mac, sender_ip, target_mac, target_ip, l4_at):  # fmt: skip
    """Decode each record ``i`` (bytes ``b[off[i]:off[i]+cap[i]]``) into the output columns.

    ``src_mac``/``dst_mac`` are the innermost Ethernet header's addresses (a Linux cooked header's source; 0
    without one) for every record; the other ARP columns are written only for records whose status is :data:`ARP`;
    ``l4_at`` is where the TCP/UDP payload starts in ``b`` (-1: none), for the DNS summariser."""
    n = off.shape[0]
    for i in range(n):
        p = off[i]
        end = p + cap[i]
        link = lt[i]
        st[i] = OK
        vni[i] = 0
        vlan[i] = 0
        frag[i] = 0
        sport[i] = 0
        dport[i] = 0
        tflags[i] = 0
        seq[i] = 0
        ack[i] = 0
        win[i] = 0
        itype[i] = 0
        icode[i] = 0
        l4_at[i] = -1
        depth = 0
        et = -1
        mac_src_at = -1  # where the link layer's source / destination MAC is (-1: none)
        mac_dst_at = -1
        src_mac[i] = 0
        dst_mac[i] = 0
        while True:  # one iteration per encapsulation level
            l4_at[i] = -1  # an outer UDP header's payload is not the inner packet's
            # ---- link layer: leave p at the network header and et as its ethertype (or -1 = by version)
            if link == LT_ETHERNET:
                if p + 14 > end:
                    st[i] = MALFORMED
                    break
                et = _be16(b, p + 12)
                mac_dst_at = p
                mac_src_at = p + 6
                dst_mac[i] = _mac48(b, p)  # the innermost frame's addresses win: a tunnel's are the VM ports'
                src_mac[i] = _mac48(b, p + 6)
                p += 14
                link = _L_ETHERTYPE
            elif link == LT_SLL:
                if p + 16 > end:
                    st[i] = MALFORMED
                    break
                et = _be16(b, p + 14)
                mac_src_at = p + 6 if _be16(b, p + 4) == 6 else -1  # the sender's address, when 6 bytes long
                src_mac[i] = _mac48(b, mac_src_at) if mac_src_at >= 0 else 0
                dst_mac[i] = 0
                p += 16
                link = _L_ETHERTYPE
            elif link == LT_SLL2:
                if p + 20 > end:
                    st[i] = MALFORMED
                    break
                et = _be16(b, p)
                mac_src_at = p + 12 if b[p + 11] == 6 else -1
                src_mac[i] = _mac48(b, mac_src_at) if mac_src_at >= 0 else 0
                dst_mac[i] = 0
                p += 20
                link = _L_ETHERTYPE
            elif link == LT_NULL or link == LT_LOOP:
                if p + 4 > end:
                    st[i] = MALFORMED
                    break
                fam = _be32(b, p)
                if link == LT_NULL and fam > 0xFFFF:  # written in the capturing host's byte order
                    fam = ((fam >> 24) & 0xFF) | ((fam >> 8) & 0xFF00)
                p += 4
                if fam == 2:
                    et = 0x0800
                elif fam == 24 or fam == 28 or fam == 30 or fam == 10:
                    et = 0x86DD
                else:
                    et = 0
                link = _L_ETHERTYPE
            elif link == LT_RAW or link == 12 or link == 14 or link == _L_IP:
                if p + 1 > end:
                    st[i] = MALFORMED
                    break
                v = b[p] >> 4
                et = 0x0800 if v == 4 else (0x86DD if v == 6 else 0)
                link = _L_ETHERTYPE
            elif link == LT_IPV4:
                et = 0x0800
                link = _L_ETHERTYPE
            elif link == LT_IPV6:
                et = 0x86DD
                link = _L_ETHERTYPE
            elif link != _L_ETHERTYPE:
                st[i] = BAD_LINKTYPE
                break
            # ---- 802.1Q / 802.1ad / QinQ tags: keep the outermost VLAN id
            bad = False
            while et == 0x8100 or et == 0x88A8 or et == 0x9100:
                if p + 4 > end:
                    bad = True
                    break
                if depth == 0 and vlan[i] == 0:
                    vlan[i] = _be16(b, p) & 0x0FFF
                et = _be16(b, p + 2)
                p += 4
            if bad:
                st[i] = MALFORMED
                break
            # ---- network layer
            if et == 0x0800:
                if p + 20 > end:
                    st[i] = MALFORMED
                    break
                if (b[p] >> 4) != 4:
                    st[i] = MALFORMED
                    break
                ihl = (np.int64(b[p]) & 0x0F) * 4
                tot = _be16(b, p + 2)
                if tot == 0:  # segmentation offload: the NIC fills the length in later
                    tot = end - p
                if ihl < 20 or tot < ihl or p + ihl > end:
                    st[i] = MALFORMED
                    break
                ipver[i] = 4
                for k in range(10):
                    src[i, k] = 0
                    dst[i, k] = 0
                src[i, 10] = 0xFF
                src[i, 11] = 0xFF
                dst[i, 10] = 0xFF
                dst[i, 11] = 0xFF
                for k in range(4):
                    src[i, 12 + k] = b[p + 12 + k]
                    dst[i, 12 + k] = b[p + 16 + k]
                pr = np.int64(b[p + 9])
                ttl[i] = b[p + 8]
                ipid[i] = _be16(b, p + 4)
                fo = _be16(b, p + 6)
                if (fo & 0x1FFF) != 0:
                    frag[i] = 2
                elif (fo & 0x2000) != 0:
                    frag[i] = 1
                else:
                    frag[i] = 0
                iplen[i] = tot
                q = p + ihl
                l4len = tot - ihl
            elif et == 0x86DD:
                if p + 40 > end:
                    st[i] = MALFORMED
                    break
                if (b[p] >> 4) != 6:
                    st[i] = MALFORMED
                    break
                ipver[i] = 6
                for k in range(16):
                    src[i, k] = b[p + 8 + k]
                    dst[i, k] = b[p + 24 + k]
                pl = _be16(b, p + 4)
                pr = np.int64(b[p + 6])
                ttl[i] = b[p + 7]
                ipid[i] = 0
                iplen[i] = 40 + pl
                q = p + 40
                l4len = pl
                frag[i] = 0
                # extension headers
                for _ in range(12):
                    if pr == 0 or pr == 43 or pr == 60 or pr == 135 or pr == 139 or pr == 140:
                        if q + 8 > end:
                            bad = True
                            break
                        hl = (np.int64(b[q + 1]) + 1) * 8
                        pr = np.int64(b[q])
                        q += hl
                        l4len -= hl
                    elif pr == 44:
                        if q + 8 > end:
                            bad = True
                            break
                        fo = _be16(b, q + 2)
                        ipid[i] = _be32(b, q + 4)
                        if (fo >> 3) != 0:
                            frag[i] = 2
                        elif (fo & 1) != 0:
                            frag[i] = 1
                        pr = np.int64(b[q])
                        q += 8
                        l4len -= 8
                    elif pr == 51:
                        if q + 8 > end:
                            bad = True
                            break
                        hl = (np.int64(b[q + 1]) + 2) * 4
                        pr = np.int64(b[q])
                        q += hl
                        l4len -= hl
                    else:
                        break
                if bad or l4len < 0:
                    st[i] = MALFORMED
                    break
            elif et == ETHERTYPE_ARP:
                st[i] = _arp(b, p, end, i, mac_src_at, mac_dst_at, arp_op, src_mac, dst_mac,
                             sender_mac, sender_ip, target_mac, target_ip)  # fmt: skip
                break
            else:
                st[i] = NON_IP
                break
            proto[i] = pr
            plen[i] = l4len
            # ---- transport layer (not in later fragments)
            if frag[i] == 2:
                break
            if pr == 6:
                if q + 20 > end or l4len < 20:
                    st[i] = MALFORMED
                    break
                doff = (np.int64(b[q + 12]) >> 4) * 4
                if doff < 20 or doff > l4len:
                    st[i] = MALFORMED
                    break
                sport[i] = _be16(b, q)
                dport[i] = _be16(b, q + 2)
                seq[i] = _be32(b, q + 4)
                ack[i] = _be32(b, q + 8)
                tflags[i] = ((np.int64(b[q + 12]) & 1) << 8) | np.int64(b[q + 13])
                win[i] = _be16(b, q + 14)
                plen[i] = l4len - doff
                l4_at[i] = q + doff
            elif pr == 17:
                if q + 8 > end or l4len < 8:
                    st[i] = MALFORMED
                    break
                sp = _be16(b, q)
                dp = _be16(b, q + 2)
                sport[i] = sp
                dport[i] = dp
                plen[i] = l4len - 8
                l4_at[i] = q + 8
                if depth == 0 and frag[i] == 0 and q + 16 <= end:
                    if dp == VXLAN_PORT and (b[q + 8] & 0x08) != 0:
                        vni[i] = (np.int64(b[q + 12]) << 16) | (np.int64(b[q + 13]) << 8) | np.int64(b[q + 14])
                        p = q + 16
                        link = LT_ETHERNET
                        depth = 1
                        continue
                    if dp == GENEVE_PORT and (b[q + 8] >> 6) == 0:
                        optlen = (np.int64(b[q + 8]) & 0x3F) * 4
                        ptype = _be16(b, q + 10)
                        vni[i] = (np.int64(b[q + 12]) << 16) | (np.int64(b[q + 13]) << 8) | np.int64(b[q + 14])
                        p = q + 16 + optlen
                        depth = 1
                        if ptype == 0x6558:
                            link = LT_ETHERNET
                            continue
                        if ptype == 0x0800 or ptype == 0x86DD:
                            link = _L_IP
                            continue
                        vni[i] = 0  # not a payload we can decode: keep the outer packet
                        depth = 0
            elif pr == 1 or pr == 58:
                if q + 4 > end or l4len < 4:
                    st[i] = MALFORMED
                    break
                t = np.int64(b[q])
                itype[i] = t
                icode[i] = b[q + 1]
                plen[i] = l4len - 8 if l4len >= 8 else 0
                is_echo = (pr == 1 and (t == 8 or t == 0)) or (pr == 58 and (t == 128 or t == 129))
                if is_echo and q + 6 <= end:
                    ident = _be16(b, q + 4)
                    sport[i] = ident
                    dport[i] = ident
            break
        if st[i] != OK:
            continue
        # hash of fields that do not change hop by hop: matches one packet across capture points
        # (not the VNI: a packet is encapsulated at some points and not at others)
        h = FNV1A64_OFFSET
        for k in range(16):
            h = _mix(h, src[i, k])
            h = _mix(h, dst[i, k])
        h = _mix(h, proto[i])
        h = _mix(h, ipid[i])
        h = _mix(h, iplen[i])
        h = _mix(h, (np.int64(sport[i]) << 16) | np.int64(dport[i]))
        h = _mix(h, seq[i])
        h = _mix(h, ack[i])
        phash[i] = finalize64(h, MURMUR3_FMIX64)


@nb.njit(cache=True)
def _arp(b, p, end, i, mac_src_at, mac_dst_at, arp_op, src_mac, dst_mac, sender_mac, sender_ip, target_mac, target_ip):
    """Decode the ARP body at ``b[p:end]`` into row ``i``; the record's status (ARP, NON_IP for another
    hardware/protocol pair, MALFORMED when cut short)."""
    if p + 8 > end:
        return MALFORMED
    if _be16(b, p) != 1 or _be16(b, p + 2) != 0x0800 or b[p + 4] != 6 or b[p + 5] != 4:
        return NON_IP
    if p + ARP_LEN > end:
        return MALFORMED
    arp_op[i] = _be16(b, p + 6)
    src_mac[i] = _mac48(b, mac_src_at) if mac_src_at >= 0 else 0
    dst_mac[i] = _mac48(b, mac_dst_at) if mac_dst_at >= 0 else 0
    sender_mac[i] = _mac48(b, p + 8)
    target_mac[i] = _mac48(b, p + 18)
    for k in range(10):
        sender_ip[i, k] = 0
        target_ip[i, k] = 0
    for k in range(10, 12):
        sender_ip[i, k] = 0xFF
        target_ip[i, k] = 0xFF
    for k in range(4):
        sender_ip[i, 12 + k] = b[p + 14 + k]
        target_ip[i, 12 + k] = b[p + 24 + k]
    return ARP


ARP_OUTPUTS = ("arp_op", "src_mac", "dst_mac", "sender_mac", "sender_ip", "target_mac", "target_ip")
"""The ARP columns of :func:`output_arrays`, in :func:`decode`'s argument order."""


def output_arrays(n: int) -> dict[str, np.ndarray]:
    """Preallocated decoder outputs for ``n`` records, in :func:`decode`'s argument order."""
    return {
        "status": np.empty(n, np.uint8),
        "vni": np.empty(n, np.uint32),
        "vlan": np.empty(n, np.uint16),
        "ip_version": np.zeros(n, np.uint8),
        "src_ip": np.zeros((n, 16), np.uint8),
        "dst_ip": np.zeros((n, 16), np.uint8),
        "proto": np.zeros(n, np.uint8),
        "src_port": np.empty(n, np.uint16),
        "dst_port": np.empty(n, np.uint16),
        "ip_len": np.zeros(n, np.uint32),
        "payload_len": np.zeros(n, np.uint32),
        "ttl": np.zeros(n, np.uint8),
        "ip_id": np.zeros(n, np.uint32),
        "frag": np.empty(n, np.uint8),
        "tcp_flags": np.empty(n, np.uint16),
        "tcp_seq": np.empty(n, np.uint32),
        "tcp_ack": np.empty(n, np.uint32),
        "tcp_win": np.empty(n, np.uint16),
        "icmp_type": np.empty(n, np.uint8),
        "icmp_code": np.empty(n, np.uint8),
        "pkt_hash": np.zeros(n, np.uint64),
        "arp_op": np.empty(n, np.uint16),
        "src_mac": np.empty(n, np.uint64),
        "dst_mac": np.empty(n, np.uint64),
        "sender_mac": np.empty(n, np.uint64),
        "sender_ip": np.empty((n, 16), np.uint8),
        "target_mac": np.empty(n, np.uint64),
        "target_ip": np.empty((n, 16), np.uint8),
        "l4_at": np.empty(n, np.int64),
    }
