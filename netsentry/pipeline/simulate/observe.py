"""Capture points: where along its path each packet is seen, when, and with what TTL and encapsulation.

A connection's path runs from the client (position 0) to the server (position 1). The tiers are
``vm`` (the tap of the cloud VM end; the client's when both ends are VMs), ``host`` (that VM's
host uplink, where overlay traffic is VXLAN-encapsulated; intra-host traffic never reaches it)
and ``gateway`` (traffic with an internet end). A packet lost on the way (half-way along the path)
is seen only at the points it passed before. One-way delay (and any extra delay) is spread
evenly along the path.
"""

from __future__ import annotations

import numpy as np

from netsentry.pipeline.simulate import tcpgen as tg
from netsentry.pipeline.simulate.cloud import GATEWAY_IP, Cloud, mac_tag
from netsentry.pipeline.simulate.conns import ConnTable

LOSS_AT = 0.5
POSITION = {"vm": (0.0, 1.0), "host": (0.05, 0.95), "gateway": (0.1, 0.9)}
"""Path position of each tier when the client is a VM (first) or an internet host (second)."""
HOPS = {"vm": 0, "host": 1, "gateway": 2}


def observe(P: np.ndarray, conns: ConnTable, cloud: Cloud, point: str) -> dict[str, np.ndarray]:
    """The packets of ``P`` (tcpgen rows) as seen at tier ``point``, sorted by time."""
    conn = P[:, tg.P_CONN]
    d = P[:, tg.P_DIR]
    cvm = conns["client_vm"][conn].astype(np.int64)
    svm = conns["server_vm"][conn].astype(np.int64)
    c_is_vm, s_is_vm = cvm >= 0, svm >= 0
    if point == "vm":
        visible = c_is_vm | s_is_vm
    elif point == "host":
        same_host = c_is_vm & s_is_vm & (cloud.host[np.maximum(cvm, 0)] == cloud.host[np.maximum(svm, 0)])
        visible = (c_is_vm | s_is_vm) & ~same_host
    elif point == "gateway":
        visible = c_is_vm ^ s_is_vm
    else:
        raise ValueError(f"unknown capture point {point!r}")
    near, far = POSITION[point]
    f = np.where(c_is_vm, near, far)
    lost = P[:, tg.P_LOST] == 1
    seen_before_loss = np.where(d == 0, f < LOSS_AT, f > LOSS_AT)
    keep = visible & (~lost | seen_before_loss)
    idx = np.flatnonzero(keep)
    f, d, conn = f[idx], d[idx], conn[idx]
    t_send, t_recv = P[idx, tg.P_TSEND], P[idx, tg.P_TRECV]
    travel = (t_recv - t_send).astype(np.float64)
    ts = t_send + np.where(d == 0, f * travel, (1.0 - f) * travel).astype(np.int64)
    order = np.argsort(ts, kind="stable")
    idx, f, d, conn, ts = idx[order], f[order], d[order], conn[order], ts[order]
    client, server = conns["client"][conn], conns["server"][conn]
    cport, sport = conns["cport"][conn], conns["sport"][conn]
    fwd = d == 0
    # TTL: 64 from VMs, 52-63 from internet hosts, minus one per tier passed since the sender
    sender_is_vm = np.where(fwd, cvm[idx] >= 0, svm[idx] >= 0)
    sender_ip = np.where(fwd, client, server).astype(np.uint64)
    ext_ttl = 52 + ((sender_ip * np.uint64(2654435761)) >> np.uint64(28)) % np.uint64(12)
    sender_pos = np.where(fwd, 0.0, 1.0)
    hops = np.rint(np.abs(f - sender_pos) * 4).astype(np.int64)
    ttl = np.where(sender_is_vm, 64, ext_ttl.astype(np.int64)) - hops
    out = {
        "ts_ns": ts,
        "conn": conn,
        "dir": d,
        "src": np.where(fwd, client, server).astype(np.uint32),
        "dst": np.where(fwd, server, client).astype(np.uint32),
        "sport": np.where(fwd, cport, sport).astype(np.uint16),
        "dport": np.where(fwd, sport, cport).astype(np.uint16),
        "proto": conns["proto"][conn],
        "app": conns["app"][conn],
        "flags": P[idx, tg.P_FLAGS],
        "seq": P[idx, tg.P_SEQ],
        "ack": P[idx, tg.P_ACK],
        "len": P[idx, tg.P_LEN],
        "ipid": P[idx, tg.P_IPID],
        "ttl": np.clip(ttl, 1, 255),
        "row": idx,
        "client_is_vm": c_is_vm[idx],
    }
    _router_answers(out, cloud, cvm[idx])
    out["outer_src"], out["outer_dst"], out["vni"] = _overlay(out, conns, cloud, point, cvm[idx], svm[idx])
    src_vm, dst_vm = np.where(fwd, cvm[idx], svm[idx]), np.where(fwd, svm[idx], cvm[idx])
    for end, vm in (("src", src_vm), ("dst", dst_vm)):
        out[f"{end}_mac_tag"] = np.where(vm >= 0, mac_tag(cloud.vni[np.maximum(vm, 0)]), 0)
    return out


def _router_answers(out: dict[str, np.ndarray], cloud: Cloud, cvm: np.ndarray) -> None:
    """Turn tcpgen's :data:`~tcpgen.ICMP_UNREACH` packets into ICMP from the client VM's router (in place): protocol 1,
    ``icmp_src`` the router's address (0 on every other packet), 28 bytes quoting the SYN (its IPv4 header and
    first 8 TCP bytes), TTL 64 less the hop to the VM."""
    n = len(out["ts_ns"])
    out["icmp_src"] = np.zeros(n, np.uint32)
    refused = np.flatnonzero(out["flags"] == tg.ICMP_UNREACH)
    if not len(refused):
        return
    out["proto"][refused] = 1
    out["icmp_src"][refused] = cloud.router_ips()[np.maximum(cvm[refused], 0)]
    out["len"][refused] = 28
    out["ttl"][refused] = 63


def _overlay(out: dict[str, np.ndarray], conns: ConnTable, cloud: Cloud, point: str, cvm: np.ndarray,
             svm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """VXLAN outer addresses and VNI at the host tier of an overlay cloud (zeros elsewhere)."""
    n = len(out["ts_ns"])
    zero = np.zeros(n, np.uint32)
    if point != "host" or not cloud.overlay:
        return zero, zero, zero
    vm_end = np.where(cvm >= 0, cvm, svm)
    vni = cloud.vni[vm_end]
    fwd = out["dir"] == 0
    c_host = np.where(cvm >= 0, cloud.host_ip(cloud.host[np.maximum(cvm, 0)]), GATEWAY_IP).astype(np.uint32)
    s_host = np.where(svm >= 0, cloud.host_ip(cloud.host[np.maximum(svm, 0)]), GATEWAY_IP).astype(np.uint32)
    return np.where(fwd, c_host, s_host), np.where(fwd, s_host, c_host), vni.astype(np.uint32)
