"""ARP findings: address sweeps (a host asking for many neighbours, most absent) and IP↔MAC conflicts (spoofing).

Rules on the ``arp/`` table rather than a learned model: ARP has no flows or windows to score, and both behaviours
are defined by the protocol (RFC 826: a host resolves only the on-link addresses it sends to; one address has one
owner on a link).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.schemas import ARP_REPLY, ARP_REQUEST, ip16_numpy, mac_text
from netsentry.pipeline.core.tracking import ModelRef
from netsentry.pipeline.inspect.findings import Finding, build_finding

SPAN_NS = 60 * 10**9
"""The span over which new targets are counted: a minute, longer than a neighbour cache entry stays fresh (Linux
base_reachable_time 30 s), so a host that keeps talking to a neighbour asks for it at most once or twice in it."""

SCAN_TARGETS = 64
"""New ARP targets in one span above which a sender is sweeping: a quarter of a /24, more on-link neighbours than
even a busy host opens conversations with in a minute (a router resolving more of its clients gets answers)."""

HIGH_FACTOR = 2
"""A sweep of more than ``HIGH_FACTOR`` × :data:`SCAN_TARGETS` new targets in one span (half a /24) is high."""

ARP_MODEL = ModelRef(uri="rules:arp", name="arp rules")
"""What the ARP findings name as their detector (rules, not a registered model)."""


def read_arp(workspace: str) -> pd.DataFrame | None:
    """The workspace's ARP table as a frame (``None`` when the workspace has none)."""
    manifest = catalog.manifest(workspace, catalog.ARP)
    if manifest is None:
        return None
    base = catalog.path(workspace, catalog.ARP)
    parts = [pq.read_table(base / p["part"]) for p in manifest.get("parts", [])]
    table = pa.concat_tables(parts) if parts else pa.table({})
    return arp_frame(table)


def arp_frame(table: pa.Table) -> pd.DataFrame:
    """An ``arp`` table as a frame with IPv4 addresses as uint32 (``sender_ip``/``target_ip``) and text points."""
    if table.num_rows == 0:
        return pd.DataFrame(columns=["ts_ns", "capture_point", "vni", "op", "sender_mac", "sender_ip", "target_ip",
                                     "gratuitous"])  # fmt: skip
    return pd.DataFrame({
        "ts_ns": table["ts_ns"].to_numpy().astype(np.int64),
        "capture_point": np.asarray(table["capture_point"].cast(pa.string()).to_numpy(zero_copy_only=False), object),
        "vni": table["vni"].to_numpy().astype(np.int64),
        "op": table["op"].to_numpy().astype(np.int64),
        "sender_mac": table["sender_mac"].to_numpy().astype(np.uint64),
        "sender_ip": _ipv4(table["sender_ip"]),
        "target_ip": _ipv4(table["target_ip"]),
        "gratuitous": table["gratuitous"].to_numpy(zero_copy_only=False).astype(bool),
    })  # fmt: skip


def _ipv4(col: pa.ChunkedArray) -> np.ndarray:
    raw = np.ascontiguousarray(ip16_numpy(col)[:, 12:16])
    return raw.view(">u4").ravel().astype(np.int64)


def _ip(v: int) -> str:
    return str(ipaddress.IPv4Address(int(v)))


def _mac(v: int) -> str:
    return str(mac_text(np.array([v], dtype=np.uint64))[0])


Ports = Mapping[int, tuple[tuple[str, ...], str, str]]
"""A tenant map's port MACs → (addresses, tenant, VM) (:meth:`TenantMap.ports_by_mac`)."""


def arp_findings(arp: pd.DataFrame | None, ports: Ports | None = None) -> list[Finding]:
    """Scan and spoofing findings from an ARP frame (see :func:`arp_frame`); none without one. With ``ports``, a
    conflict names the VM whose MAC claims an address not its own."""
    if arp is None or arp.empty:
        return []
    return scan_findings(arp) + spoofing_findings(arp, ports or {})


def _fresh_requests(arp: pd.DataFrame) -> pd.DataFrame:
    """Requests (not announcements) that ask for a target this sender had not asked for in the previous span;
    two of one target are a span apart, so a span holds at most one per target (a lower bound on distinct)."""
    req = arp[(arp["op"] == ARP_REQUEST) & ~arp["gratuitous"]]
    req = req.sort_values(["sender_mac", "sender_ip", "vni", "target_ip", "ts_ns"], kind="stable")
    gap = req.groupby(["sender_mac", "sender_ip", "vni", "target_ip"], sort=False)["ts_ns"].diff()
    return req[gap.isna() | (gap >= SPAN_NS)]


def _busiest_span(ts: np.ndarray) -> tuple[int, int]:
    """Index range [i, j) of sorted ``ts`` with the most entries within one span."""
    ends = np.searchsorted(ts, ts + SPAN_NS, side="left")
    i = int(np.argmax(ends - np.arange(len(ts))))
    return i, int(ends[i])


def scan_findings(arp: pd.DataFrame) -> list[Finding]:
    """One finding per sender (MAC, IP, VNI) with more than :data:`SCAN_TARGETS` new targets in one span and most
    of its distinct targets never answered (no reply whose sender address is the target)."""
    fresh = _fresh_requests(arp)
    keys = ["sender_mac", "sender_ip", "vni"]
    sizes = fresh.groupby(keys, sort=False).size()
    candidates = sizes[sizes > SCAN_TARGETS].index
    if not len(candidates):
        return []
    replies = arp[arp["op"] == ARP_REPLY]
    answered_ips = set(zip(replies["vni"].tolist(), replies["sender_ip"].tolist(), strict=True))
    requests = arp[(arp["op"] == ARP_REQUEST) & ~arp["gratuitous"]]
    req_groups = requests.groupby(keys, sort=False).indices
    fresh_groups = fresh.groupby(keys, sort=False).indices
    found = []
    for key in candidates:
        ts = np.sort(fresh["ts_ns"].to_numpy()[fresh_groups[key]])
        i, j = _busiest_span(ts)
        if j - i <= SCAN_TARGETS:
            continue
        asked = requests.iloc[req_groups[key]]
        targets = np.unique(asked["target_ip"].to_numpy())
        answered = sum((key[2], int(t)) in answered_ips for t in targets)
        if 2 * answered >= len(targets):
            continue
        found.append(_scan_finding(key, asked, targets, answered, j - i, int(ts[j - 1] - ts[i])))
    return found


def _prefix(targets: np.ndarray) -> str:
    """The smallest IPv4 prefix holding every target."""
    lo, hi = int(targets.min()), int(targets.max())
    length = 32 - (lo ^ hi).bit_length()
    return str(ipaddress.IPv4Network((lo, length), strict=False))


def _scan_finding(
    key: tuple[int, int, int], asked: pd.DataFrame, targets: np.ndarray, answered: int, in_span: int, span_ns: int
) -> Finding:
    mac, ip, vni = _mac(key[0]), _ip(key[1]), int(key[2])
    first, last = int(asked["ts_ns"].min()), int(asked["ts_ns"].max())
    counts = {"requests": len(asked), "distinct_targets": len(targets), "answered": answered,
              "span_distinct_targets": in_span, "span_s": round(span_ns / 1e9, 3),
              "duration_s": round((last - first) / 1e9, 3)}  # fmt: skip
    evidence: dict[str, Any] = {
        "mac": mac, "address": ip, "vni": vni, "target_prefix": _prefix(targets), "first_ns": first,
        "last_ns": last, "bound": SCAN_TARGETS, "span_limit_s": SPAN_NS // 10**9, **counts, "counts": counts,
    }  # fmt: skip
    severity = "high" if in_span > HIGH_FACTOR * SCAN_TARGETS else "medium"
    where = str(asked["capture_point"].iloc[0])
    return _address_finding("arp_scan", ip, where, (first, last), (float(in_span), float(SCAN_TARGETS)), severity,
                            evidence, _scan_summary, id_parts=("arp_scan", mac, ip, vni, first))  # fmt: skip


def _scan_summary(f: Finding) -> str:
    ev = f.evidence
    return (f"{ev['address']} ({ev['mac']}) asked ARP for {ev['distinct_targets']} addresses of "
            f"{ev['target_prefix']} in {ev['duration_s']:.1f} s, {ev['answered']} answered")  # fmt: skip


def spoofing_findings(arp: pd.DataFrame, ports: Ports | None = None) -> list[Finding]:
    """One finding per address (and VNI) claimed by two or more MACs, a claim being a reply's or a gratuitous
    ARP's sender address; the unspecified address 0.0.0.0 (probes) and a zero MAC claim nothing. A claimant whose
    MAC is a port (``ports``) of another address is the impostor: the finding is about its VM."""
    claims = arp[((arp["op"] == ARP_REPLY) | arp["gratuitous"]) & (arp["sender_ip"] != 0) & (arp["sender_mac"] != 0)]
    owners = claims.groupby(["vni", "sender_ip"], sort=False)["sender_mac"].nunique()
    conflicted = owners[owners >= 2].index
    if not len(conflicted):
        return []
    requests = arp[(arp["op"] == ARP_REQUEST) & ~arp["gratuitous"]]
    asked_by = requests.groupby(["vni", "target_ip"], sort=False)["sender_ip"].nunique()
    groups = claims.groupby(["vni", "sender_ip"], sort=False).indices
    return [_spoof_finding(k, claims.iloc[groups[k]], int(asked_by.get(k, 0)), ports or {}) for k in sorted(conflicted)]


def _spoof_finding(key: tuple[int, int], rows: pd.DataFrame, asked_by: int, ports: Ports) -> Finding:
    vni, ip = int(key[0]), _ip(key[1])
    rows = rows.sort_values("ts_ns", kind="stable")
    per_mac = rows.groupby("sender_mac", sort=False).agg(
        first_ns=("ts_ns", "min"), last_ns=("ts_ns", "max"), claims=("ts_ns", "size"),
        gratuitous=("gratuitous", "sum"),
    ).sort_values("first_ns", kind="stable")  # fmt: skip
    claimants = [{"mac": _mac(m), "address": ip, "claims": int(r.claims), "gratuitous": int(r.gratuitous),
                  "replies": int(r.claims - r.gratuitous), "first_ns": int(r.first_ns), "last_ns": int(r.last_ns),
                  **_port(ports, int(m))} for m, r in per_mac.iterrows()]  # fmt: skip
    impostor = next((c for c in claimants if "port_ip" in c and ip not in c["port_ips"]), None)
    start, end = int(rows["ts_ns"].min()), int(rows["ts_ns"].max())
    evidence: dict[str, Any] = {
        "address": ip, "vni": vni, "first_mac": claimants[0]["mac"], "gateway": asked_by >= 2, "asked_by": asked_by,
        "claimants": claimants, "first_ns": start, "last_ns": end,
        "counts": {"macs": len(claimants), "claims": len(rows), "asked_by": asked_by},
    }  # fmt: skip
    where = str(rows["capture_point"].iloc[0])
    if impostor is not None:
        evidence["impostor"] = impostor
        return build_finding(
            "compromise", "arp_spoofing", id_parts=("arp_spoofing", ip, vni, start), scope_type="vm",
            scope=f"{impostor['tenant']}/{impostor['vm']}", tenant=impostor["tenant"], vm=impostor["vm"],
            ip=impostor["port_ip"], capture_point=where, start_ns=start, end_ns=end, windows=1,
            score=float(len(claimants)), threshold=2.0, severity="high", model=ARP_MODEL, evidence=evidence,
            summarize=_spoof_summary,
        )  # fmt: skip
    return _address_finding("arp_spoofing", ip, where, (start, end), (float(len(claimants)), 2.0), "high", evidence,
                            _spoof_summary, id_parts=("arp_spoofing", ip, vni, start))  # fmt: skip


def _port(ports: Ports, mac: int) -> dict[str, str]:
    """The tenant map's port of ``mac``: its address, tenant and VM (empty when the map has none)."""
    if mac not in ports:
        return {}
    ips, tenant, vm = ports[mac]
    return {"port_ip": ips[0], "port_ips": list(ips), "tenant": tenant, "vm": vm}


def _spoof_summary(f: Finding) -> str:
    ev = f.evidence
    first, *later = ev["claimants"]
    what = f"gateway {ev['address']} (asked for by {ev['asked_by']} hosts)" if ev["gateway"] else ev["address"]
    if "impostor" in ev:
        who = ev["impostor"]
        return (f"{who['tenant']}/{who['vm']} ({who['port_ip']}, MAC {who['mac']}) claims {what}, an address not its "
                f"own ({len(ev['claimants'])} MACs claim it; {first['mac']} first)")  # fmt: skip
    others = ", ".join(c["mac"] for c in later)
    return f"{what} is claimed by {len(ev['claimants'])} MACs: {first['mac']} first, then {others}"


def _address_finding(
    finding_type: str,
    ip: str,
    capture_point: str,
    span: tuple[int, int],
    score_threshold: tuple[float, float],
    severity: str,
    evidence: dict[str, Any],
    summarize: Callable[[Finding], str],
    *,
    id_parts: tuple[Any, ...],
) -> Finding:
    """An ARP finding about one address: a compromise finding named by the rules, not a registered model."""
    return build_finding(
        "compromise", finding_type, id_parts=id_parts, scope_type="address", scope=ip, ip=ip,
        capture_point=capture_point, start_ns=span[0], end_ns=span[1], windows=1, score=score_threshold[0],
        threshold=score_threshold[1], severity=severity, model=ARP_MODEL, evidence=evidence, summarize=summarize,
    )  # fmt: skip
