"""Flow endpoints for tenant windows: each flow seen from both ends, kept for the entities we score, in windows.

Every flow is an *outgoing* flow of its initiator and an *incoming* flow of its responder; an entity is read at its
main capture point, plus what it sent that never reached that point, and a flow belongs to every window it overlaps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from netsentry.pipeline.capture.tenants import UNKNOWN as UNKNOWN_VM
from netsentry.pipeline.core.errors import SchemaError
from netsentry.pipeline.core.schemas import ip16_numpy, ip_text
from netsentry.pipeline.core.units import NS_PER_S
from netsentry.pipeline.features.faults.arrays import flow_hash
from netsentry.pipeline.features.tenant.catalogue import (
    BEACON_LAST_IATS,
    BEACON_MIN_IATS,
    BEACON_MIN_PERIOD_S,
    BEACON_SD_SCALE,
    FAILED_STATES,
    FLOW_COLUMNS,
    ICMP_PROTOCOLS,
)

SAME_FLOW_NS = 2 * NS_PER_S
"""Two capture points saw one flow when its 5-tuple starts at both within this (the path between them, plus a
start one point missed)."""

_TEXT_COLUMNS = ("src_ip", "dst_ip", "capture_point", "src_tenant", "src_vm", "dst_tenant", "dst_vm", "conn_state",
                 "end_reason")  # fmt: skip


def _strings(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(col.cast(pa.string()).to_pandas().fillna("").to_numpy(dtype=object))


def flow_sides(flows: pa.Table) -> pd.DataFrame:
    """One row per (flow, endpoint): the flow as the initiator's outgoing and the responder's incoming flow."""
    missing = [c for c in FLOW_COLUMNS if c not in flows.column_names]
    if missing:
        raise SchemaError(f"flows table lacks column(s) {', '.join(missing)}; rerun `netsentry flows`")
    t = flows.select(list(FLOW_COLUMNS))
    src_raw, dst_raw = ip16_numpy(t.column("src_ip")), ip16_numpy(t.column("dst_ip"))
    src_ip, dst_ip = ip_text(src_raw), ip_text(dst_raw)
    src_group, dst_group = group_address(src_raw), group_address(dst_raw)
    src_tenant, src_vm = _strings(t.column("src_tenant")), _strings(t.column("src_vm"))
    dst_tenant, dst_vm = _strings(t.column("dst_tenant")), _strings(t.column("dst_vm"))
    num = {c: t.column(c).to_numpy() for c in FLOW_COLUMNS if c not in _TEXT_COLUMNS}
    state = _strings(t.column("conn_state"))
    failed = failed_flows(state, num["protocol"], dst_group)
    # a connection the capture ended while it was open: a session of unknown length, never "short"
    cut = (_strings(t.column("end_reason")) == "eof") & ~failed
    # both ends sent application bytes: an exchange with a live service (a guess gets an answer; a refused or
    # reset-before-answering connection does not)
    exchange = (num["src2dst_payload_bytes"] > 0) & (num["dst2src_payload_bytes"] > 0)
    # a TCP connection the responder answered (a handshake, a refusal) in which neither end said a word
    wordless = ((num["protocol"] == 6) & (num["dst2src_packets"] > 0) & (num["src2dst_payload_bytes"] == 0)
                & (num["dst2src_payload_bytes"] == 0))  # fmt: skip
    point = _strings(t.column("capture_point"))
    n = t.num_rows
    # ICMP is one service per protocol: the echo identifier the flow key uses is no port
    icmp = np.isin(num["protocol"], ICMP_PROTOCOLS)
    service_port = np.where(icmp, 0, num["dst_port"]).astype(np.int32)
    remote_port_in = np.where(icmp, 0, num["src_port"]).astype(np.int32)
    flow_idx = np.arange(n)
    # the 5-tuple without the VNI: one connection seen at a tap (no overlay) and at an uplink (VXLAN) alike
    tuple_id = flow_hash(np.zeros(n, np.uint32), src_raw, dst_raw, num["src_port"], num["dst_port"], num["protocol"])

    def side(out: bool) -> pd.DataFrame:
        me, other = (src_ip, dst_ip) if out else (dst_ip, src_ip)
        group = src_group if out else dst_group
        tenant, vm = (src_tenant, src_vm) if out else (dst_tenant, dst_vm)
        sent_p, recv_p = (num["src2dst_packets"], num["dst2src_packets"])
        sent_b, recv_b = (num["src2dst_bytes"], num["dst2src_bytes"])
        if not out:
            sent_p, recv_p, sent_b, recv_b = recv_p, sent_p, recv_b, sent_b
        return pd.DataFrame(
            {
                "flow": flow_idx,
                "tuple_id": tuple_id,
                "tenant": tenant,
                "vm": np.where((vm == "") | (vm == "external"), me, vm),
                "ip": me,
                "group": group,
                "remote": other,
                "port": service_port,
                "remote_port": service_port if out else remote_port_in,
                "proto": num["protocol"].astype(np.int16),
                "capture_point": point,
                "vni": num["vni"],
                "out": np.full(n, out),
                "failed": failed,
                "cut": cut,
                "exchange": exchange,
                "wordless": wordless,
                "start": num["first_seen_ns"],
                "end": num["last_seen_ns"],
                "sent_p": sent_p.astype(np.float64),
                "recv_p": recv_p.astype(np.float64),
                "sent_b": sent_b.astype(np.float64),
                "recv_b": recv_b.astype(np.float64),
                "req_size": num["src2dst_bytes"] / np.maximum(num["src2dst_packets"], 1),
            }
        )

    return pd.concat([side(True), side(False)], ignore_index=True)


def group_address(raw: np.ndarray) -> np.ndarray:
    """Per stored address (``(n, 16)`` bytes, IPv4 as ``::ffff:a.b.c.d``): broadcast or multicast (IPv4 x.x.x.255,
    224/4, 255.255.255.255; IPv6 ff00::/8), an audience that nobody is expected to answer and that is no host."""
    v4 = (raw[:, :10] == 0).all(axis=1) & (raw[:, 10] == 0xFF) & (raw[:, 11] == 0xFF)
    v4_group = (raw[:, 15] == 0xFF) | ((raw[:, 12] >= 224) & (raw[:, 12] <= 239))
    return np.where(v4, v4_group, raw[:, 0] == 0xFF)


def failed_flows(state: np.ndarray, protocol: np.ndarray, dst_group: np.ndarray) -> np.ndarray:
    """Flows whose initiator got nowhere: a TCP handshake that never completed (:data:`FAILED_STATES`), or a UDP
    or ICMP flow to a unicast address that drew no packet back (``S0``): an unanswered ping or UDP probe is the
    same evidence as an unanswered SYN."""
    tcp_failed = np.isin(state, FAILED_STATES) & (protocol == 6)
    silent = (state == "S0") & (protocol != 6) & ~dst_group
    return tcp_failed | silent


def local_entities(sides: pd.DataFrame) -> pd.DataFrame:
    """Keep endpoints the tenant map knows (all endpoints when it knows none; never a broadcast or multicast
    address), each at its main capture point, plus the flows it began that only other points saw.

    The main point of an entity is the one where its flows carry an overlay VNI (tenants reusing a CIDR are told
    apart only there), then the one with most flows. A flow the entity began that never reached its main point
    (to a VM on its own host; a probe its virtual switch dropped) is kept from another point, relabelled with the
    main point and VNI, when its address names one entity at the main points (elsewhere a reused CIDR cannot be
    told apart). Adds ``entity_id`` (0..n-1)."""
    # a broadcast or multicast address is an audience, not a host: never an entity
    sides = sides[~sides["group"].to_numpy()]
    local = sides["tenant"] != "external"
    if local.any():
        # VMs only: an address inside a VPC that no port declares ("unknown", e.g. a scanned empty slot) is not one
        sides = sides[local & (sides["vm"] != UNKNOWN_VM)]
    sides = sides.assign(
        entity=sides["tenant"].astype(str) + "/" + sides["vm"].astype(str), has_vni=sides["vni"].to_numpy() != 0
    )
    counts = (
        sides.groupby(["entity", "capture_point"], observed=True)
        .agg(n=("has_vni", "size"), vni=("has_vni", "mean"))
        .reset_index()
    )
    counts["vni"] = counts["vni"] > 0.5
    main = counts.sort_values(
        ["entity", "vni", "n", "capture_point"], ascending=[True, False, False, True]
    ).drop_duplicates("entity")
    sides = sides.merge(main[["entity", "capture_point"]], on="entity", how="inner", suffixes=("", "_main"))
    at_main = (sides["capture_point"] == sides["capture_point_main"]).to_numpy()
    ips = sides.loc[at_main, ["ip", "entity"]].drop_duplicates()
    shared_ip = ips["ip"].duplicated(keep=False)
    sole = ~sides["ip"].isin(ips.loc[shared_ip, "ip"]).to_numpy()
    borrow = ~at_main & sides["out"].to_numpy() & sole
    kept = at_main | borrow
    unmatched = ~_seen_at_main(sides[kept], at_main[kept])
    borrow[borrow] = unmatched[~at_main[kept]]  # candidates in order: the rows of ``kept`` not at the main point
    kept = at_main | borrow
    keep = sides[kept]
    main_vni = keep[at_main[kept]].groupby("entity")["vni"].first()
    vni = keep["entity"].map(main_vni).fillna(keep["vni"]).to_numpy().astype(sides["vni"].dtype)
    keep = keep.assign(capture_point=keep["capture_point_main"], vni=vni)
    keep = keep.drop(columns="capture_point_main").reset_index(drop=True)
    keep["entity_id"] = pd.factorize(keep["entity"])[0]
    return keep


def _seen_at_main(sides: pd.DataFrame, at_main: np.ndarray) -> np.ndarray:
    """Per side row: the same flow (entity, direction, 5-tuple) starts at the entity's main point within
    :data:`SAME_FLOW_NS` of this row's start."""
    key = sides.groupby(["entity", "out", "tuple_id"], sort=False).ngroup().to_numpy(np.int64)
    start = sides["start"].to_numpy(np.int64)
    order = np.lexsort((start, key))
    k, t, m = key[order], start[order], at_main[order]
    idx = np.arange(len(k))
    prev = np.maximum.accumulate(np.where(m, idx, -1))
    nxt = np.minimum.accumulate(np.where(m, idx, len(k))[::-1])[::-1]
    near = np.zeros(len(k), dtype=bool)
    for j in (prev, nxt):
        ok = (j >= 0) & (j < len(k))
        jj = np.where(ok, j, 0)
        near |= ok & (k[jj] == k) & (np.abs(t[jj] - t) <= SAME_FLOW_NS)
    seen = np.empty(len(k), dtype=bool)
    seen[order] = near
    return seen


def beacon_scores(sides: pd.DataFrame) -> np.ndarray:
    """Per outgoing flow: regularity of the starts of the entity's flows to the same (remote, port) up to it."""
    score = np.zeros(len(sides))
    out = np.flatnonzero(sides["out"].to_numpy())
    if len(out) == 0:
        return score
    o = sides.iloc[out]
    service = pd.factorize(o["entity_id"].astype(str) + "|" + o["remote"].astype(str) + "|" + o["port"].astype(str))[0]
    order = np.lexsort((o["start"].to_numpy(), service))
    service, start_s = service[order], o["start"].to_numpy()[order] / NS_PER_S
    first = np.r_[True, service[1:] != service[:-1]]
    iat = np.where(first, 0.0, np.diff(start_s, prepend=start_s[0]))
    has_iat = ~first
    log_iat = np.where(has_iat, np.log(np.maximum(iat, 1e-9)), 0.0)
    sum_log, sum_log_sq = np.cumsum(log_iat), np.cumsum(log_iat * log_iat)
    count = np.cumsum(has_iat.astype(np.float64))
    idx = np.arange(len(service))
    service_start = np.maximum.accumulate(np.where(first, idx, 0))
    lo = np.maximum(idx - BEACON_LAST_IATS, service_start)  # IATs in (lo, idx]
    n_iat, s1, s2 = count - count[lo], sum_log - sum_log[lo], sum_log_sq - sum_log_sq[lo]
    mean = np.divide(s1, n_iat, out=np.zeros_like(s1), where=n_iat > 0)
    sd = np.sqrt(np.maximum(np.divide(s2, n_iat, out=np.zeros_like(s2), where=n_iat > 0) - mean * mean, 0.0))
    # Poisson arrivals give sd(log IAT) ≈ 1.28; a timer with 10 % jitter ≈ 0.1
    periodic = (n_iat >= BEACON_MIN_IATS) & (mean >= np.log(BEACON_MIN_PERIOD_S))
    sorted_scores = np.where(periodic, 1.0 - np.minimum(sd / BEACON_SD_SCALE, 1.0), 0.0)
    res = np.empty(len(service))
    res[order] = sorted_scores
    score[out] = res
    return score


def solo_remote(sides: pd.DataFrame) -> np.ndarray:
    """Per side: 1 when its remote address is contacted (outgoing flows) by this entity alone among the capture's
    VMs, else 0. A timer or session to a service many VMs use is ordinary; a check-in to a server only one VM
    knows is how an implant or a miner looks. Without a tenant map every address is an entity, remote servers
    included, and which hosts are ours is unknown: nothing is solo then (0), the measure says nothing rather than
    something wrong."""
    if not (sides["tenant"].to_numpy() != "external").any() or sides["entity_id"].nunique() < 2:
        return np.zeros(len(sides))
    out = sides[sides["out"].to_numpy()]
    reach = out.groupby("remote", observed=True)["entity_id"].nunique()
    return (sides["remote"].map(reach).fillna(1).to_numpy() <= 1).astype(np.float64)


def service_first_use(sides: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per side: when its entity first used its service (proto, remote, port; either direction) and when the
    entity was first seen, in ns."""
    service = sides.groupby(["entity_id", "proto", "remote", "port"], observed=True)["start"].transform("min")
    entity = sides.groupby("entity_id")["start"].transform("min")
    return service.to_numpy(np.int64), entity.to_numpy(np.int64)


def window_rows(sides: pd.DataFrame, hop_ns: int, window_ns: int, t_min: int, t_max: int) -> pd.DataFrame:
    """Rows (side, window) for every window a flow overlaps: ``window_id`` (its start is ``window_id * hop_ns``),
    ``frac`` (the share of the flow's duration inside the window) and ``started`` (the flow began in it)."""
    first_window = t_min // hop_ns
    last_window = max(first_window, -(-(t_max - window_ns) // hop_ns))
    start, end = sides["start"].to_numpy(), sides["end"].to_numpy()
    lo = np.clip((start - window_ns) // hop_ns + 1, first_window, last_window)
    hi = np.clip(end // hop_ns, first_window, last_window)
    reps = np.maximum(hi - lo + 1, 0)
    rows = np.repeat(np.arange(len(sides)), reps)
    offs = np.arange(len(rows)) - np.repeat(np.cumsum(reps) - reps, reps)
    window_id = lo[rows] + offs
    x = sides.iloc[rows].reset_index(drop=True)
    ws = window_id * hop_ns
    st, en = start[rows], end[rows]
    overlap = np.minimum(en, ws + window_ns) - np.maximum(st, ws)
    dur = en - st
    frac = np.where(dur > 0, np.clip(overlap, 0, None) / np.maximum(dur, 1), 1.0)
    x["window_id"] = window_id
    x["frac"] = frac
    x["started"] = (st >= ws) & (st < ws + window_ns)
    return x
