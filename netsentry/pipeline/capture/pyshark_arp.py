"""The cross-check engine's ARP rows: tshark's ``arp`` layer (with the link layer before it) → the ARP contract.

Same rules as the fast decoder (:mod:`netsentry.pipeline.capture.decode`): Ethernet/IPv4 ARP only (another
hardware/protocol pair is a non-IP frame), cut short → malformed, the link layer's MACs (a Linux cooked
capture has only the source), the outermost VLAN and the tunnel's VNI.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from netsentry.pipeline.capture.reader import arp_table
from netsentry.pipeline.core.schemas import ip16_from_text

_DTYPES = {"ts_ns": np.int64, "vni": np.uint32, "vlan": np.uint16, "arp_op": np.uint16}


class ArpRow(NamedTuple):
    """One ARP frame's fields, as the fast decoder writes them."""

    ts_ns: int
    vni: int
    vlan: int
    arp_op: int
    src_mac: int
    dst_mac: int
    sender_mac: int
    sender_ip: str
    target_mac: int
    target_ip: str


def _int(v: Any) -> int:
    """A tshark numeric field (decimal or ``0x`` hex); ValueError/TypeError when absent (the frame was cut short)."""
    if isinstance(v, list):
        v = v[0]
    s = str(v) if v is not None else ""
    return int(s, 16) if s.startswith("0x") else int(s)


def _mac(v: Any) -> int:
    """``aa:bb:cc:dd:ee:ff`` → the integer form; ValueError when absent."""
    if isinstance(v, list):
        v = v[0]
    if not isinstance(v, str):
        raise ValueError("no MAC address")
    return int(v.replace(":", ""), 16)


def link_macs(layers: dict[str, Any], eth_seen: int) -> tuple[int, int]:
    """``(src_mac, dst_mac)`` of the link header before the ARP body: the ``eth_seen``-th Ethernet header, else
    a Linux cooked header's source address (destination 0), else zeros."""
    eth = layers.get("eth")
    if isinstance(eth, list):
        eth = eth[eth_seen - 1] if 0 < eth_seen <= len(eth) else None
    if eth_seen > 0 and isinstance(eth, dict):
        return _mac(eth.get("eth_eth_src")), _mac(eth.get("eth_eth_dst"))
    sll = layers.get("sll")
    if isinstance(sll, dict) and isinstance(sll.get("sll_sll_src_eth"), str):
        return _mac(sll["sll_sll_src_eth"]), 0
    return 0, 0


def arp_row(arp: dict[str, Any], macs: tuple[int, int], vni: int, vlan: int) -> ArpRow | None:
    """An ``arp`` layer → its row (``ts_ns`` 0, set by the caller); None for an ARP of another hardware/protocol pair.

    The 8-byte header is read in full before the pair is judged, as the fast decoder does."""
    p = "arp_arp_"
    htype, ptype = _int(arp.get(p + "hw_type")), _int(arp.get(p + "proto_type"))
    hlen, plen, op = _int(arp.get(p + "hw_size")), _int(arp.get(p + "proto_size")), _int(arp.get(p + "opcode"))
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
        return None
    sender_ip, target_ip = arp.get(p + "src_proto_ipv4"), arp.get(p + "dst_proto_ipv4")
    if not isinstance(sender_ip, str) or not isinstance(target_ip, str):
        raise ValueError("ARP addresses cut short")
    sender_mac, target_mac = _mac(arp.get(p + "src_hw_mac")), _mac(arp.get(p + "dst_hw_mac"))
    return ArpRow(0, vni, vlan, op, macs[0], macs[1], sender_mac, sender_ip, target_mac, target_ip)


def arp_batch(rows: list[ArpRow], capture_point: str) -> pa.Table:
    """ARP rows → one table in the ARP contract."""
    cols: dict[str, np.ndarray] = {}
    for name, values in zip(ArpRow._fields, zip(*rows, strict=True), strict=True):
        if name in ("sender_ip", "target_ip"):
            cols[name] = ip16_from_text(list(values))
        else:
            cols[name] = np.array(values, dtype=_DTYPES.get(name, np.uint64))
    return arp_table(cols, capture_point)
