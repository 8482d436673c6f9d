"""Fault findings: flagged fault windows merged into incidents, related scopes clustered, each typed and sized.

A loss burst on one host uplink flags that host's rows, the host pairs through it, its VMs and the capture points
that saw the traffic. Per scope, consecutive flagged windows (gaps up to ``gap_windows``) form a scope incident;
scope incidents overlapping in time that share a host form one incident (cut in two where a fault on a host begins
after the faults before it ended: :func:`onsets`), reported at the scope that explains the others
(:func:`primary_scope`). Capture-point incidents join the cluster they overlap most, or stand alone. A ``loss``
incident without the minimum evidence of loss (:mod:`~netsentry.pipeline.inspect.loss_evidence`) and a
``reordering`` one are reported at low severity."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from netsentry.pipeline.core.tracking import ModelRef
from netsentry.pipeline.features.faults.catalogue import FAULT_FEATURES, SILENT_SPAN_S
from netsentry.pipeline.features.labels import MIN_OBSERVABLE_PACKETS
from netsentry.pipeline.inspect.findings import Finding, build_finding, hhmmss
from netsentry.pipeline.inspect.loss_evidence import loss_evidence, loss_shown, shortfall
from netsentry.pipeline.inspect.scoring import deviations, fold, severity, spreads, timeline

SUSTAINED_WINDOWS = 2
MICROBURST_PACKETS_PER_MS = 20
SILENT_SERVICE_ATTEMPTS = 3
SILENCED = 0.1
"""A scope carrying at most this share of its usual packets in most of its flagged windows (the median: the incident
ends with the senders' burst of retries), busy as it usually is, while its senders retry, has gone silent: a black
hole even when no SYN was left unanswered (a link down between short exchanges)."""
REFUSALS = 3
REFUSAL_SHARE = 0.1
"""ICMP destination unreachable messages (at least :data:`REFUSALS`, and this share of the connections begun) at which
the network itself says why traffic fails (a route or filter); a few amid a flood's thousands do not."""
"""Attempts to one service that answered none of them (within ``SILENT_SPAN_S``) from which an incident is a
silent service: an application retrying, beyond a one-off timeout and its retry."""
ONSET_SCOPES = 2
"""Paths or VMs of a host that must start flagging with it for a host incident to be where a fault begins."""
SCOPE_ORDER = {"host": 0, "host_pair": 1, "vm": 2, "capture_point": 3}
USUAL_CAP_Q = 0.95
"""A scope's usual retransmissions per window are its mean with each window capped at this quantile of its windows:
steady ambient loss counts in full, an earlier burst in a few windows only as much as an ordinary busy window."""
LOSSY_PATH_Z = 3.0
"""A path is lossy in an incident when its retransmissions exceed their usual count by this many of a count's
standard deviations (√(usual + 1)): a busy internet path's ambient loss varies by a few from second to second."""
BUSY_PATH_SEGMENTS = 50
"""Data segments a path must carry in an incident's span for a clean record to clear its ends: at a few per cent
loss, a path with fewer may well show no retransmission at all."""


@dataclass
class ScopeIncident:
    """Consecutive flagged windows of one scope."""

    scope_type: str
    scope: str
    start_ns: int
    end_ns: int
    rows: pd.DataFrame
    hosts: frozenset[str] = field(default_factory=frozenset)

    @property
    def score(self) -> float:
        return float(self.rows["score"].max())

    @property
    def window_ns(self) -> int:
        """The length of its windows: one window of slack in time."""
        return int(self.rows["window_s"].iloc[0] * 1e9)


def scope_incidents(scored: pd.DataFrame, gap_windows: int = 1) -> list[ScopeIncident]:
    """Runs of flagged windows per scope, allowing ``gap_windows`` unflagged windows inside a run."""
    out: list[ScopeIncident] = []
    hit = scored[scored["flag"] == 1].sort_values(["scope_type", "scope", "window_start_ns"], kind="stable")
    for (stype, scope), rows in hit.groupby(["scope_type", "scope"], sort=False):
        start = rows["window_start_ns"].to_numpy(np.int64)
        width = (rows["window_s"].to_numpy(np.float64) * 1e9).astype(np.int64)
        end = start + width
        breaks = np.flatnonzero(start[1:] > end[:-1] + gap_windows * width[:-1]) + 1
        for part in np.split(np.arange(len(rows)), breaks):
            out.append(ScopeIncident(str(stype), str(scope), int(start[part[0]]), int(end[part[-1]]),
                                     rows.iloc[part]))  # fmt: skip
    return out


def _hosts_of(inc: ScopeIncident, known_hosts: set[str], vm_hosts: dict[str, str]) -> frozenset[str]:
    if inc.scope_type == "host":
        return frozenset([inc.scope])
    if inc.scope_type == "host_pair":  # "A-B" with A and B host names that may contain "-" themselves
        for i, ch in enumerate(inc.scope):
            if ch == "-" and inc.scope[:i] in known_hosts and inc.scope[i + 1 :] in known_hosts:
                return frozenset([inc.scope[:i], inc.scope[i + 1 :]])
        return frozenset(inc.scope.split("-", 1))
    if inc.scope_type == "vm" and inc.scope in vm_hosts:
        return frozenset([vm_hosts[inc.scope]])
    return frozenset()


def _overlap(a: ScopeIncident, b: ScopeIncident, slack_ns: int) -> int:
    return min(a.end_ns, b.end_ns) + slack_ns - max(a.start_ns, b.start_ns)


def cluster(incidents: list[ScopeIncident], vm_hosts: dict[str, str]) -> list[list[ScopeIncident]]:
    """Scope incidents grouped: overlapping in time (one window of slack) and sharing a host, a group cut where a
    later fault begins (:func:`_split_at_new_onsets`)."""
    known = {i.scope for i in incidents if i.scope_type == "host"} | set(vm_hosts.values())
    for inc in incidents:
        inc.hosts = _hosts_of(inc, known, vm_hosts)
    located = [i for i, inc in enumerate(incidents) if inc.scope_type != "capture_point"]
    parent = list(range(len(incidents)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = sorted(located, key=lambda i: incidents[i].start_ns)
    for n, i in enumerate(order):
        a = incidents[i]
        slack = a.window_ns
        for j in order[n + 1 :]:
            b = incidents[j]
            if b.start_ns > a.end_ns + slack:
                break
            if a.hosts & b.hosts and _overlap(a, b, slack) > 0:
                parent[root(j)] = root(i)
    linked: dict[int, list[int]] = {}
    for i in located:
        linked.setdefault(root(i), []).append(i)
    groups = {part[0]: part for members in linked.values() for part in _split_at_new_onsets(incidents, members)}
    for i, inc in enumerate(incidents):
        if inc.scope_type != "capture_point":
            continue
        slack = inc.window_ns
        best, best_overlap = None, 0
        for g, members in groups.items():
            ov = max(_overlap(inc, incidents[m], slack) for m in members)
            if ov > best_overlap:
                best, best_overlap = g, ov
        groups.setdefault(best if best is not None else i, []).append(i)
    return [[incidents[i] for i in members] for members in groups.values()]


def onsets(incidents: list[ScopeIncident], members: list[int]) -> list[int]:
    """The host incidents among ``members`` where a fault on that host begins: at least :data:`ONSET_SCOPES` of
    its paths or VMs start flagging within one window of its own start (a link that fails takes its
    conversations with it at once; a scope that drifts in later does not make a new onset)."""
    out = []
    for h in members:
        a = incidents[h]
        if a.scope_type != "host":
            continue
        slack = a.window_ns
        along = {incidents[m].scope for m in members
                 if incidents[m].scope_type in ("host_pair", "vm") and a.scope in incidents[m].hosts
                 and abs(incidents[m].start_ns - a.start_ns) <= slack}  # fmt: skip
        if len(along) >= ONSET_SCOPES:
            out.append(h)
    return sorted(out, key=lambda h: incidents[h].start_ns)


def _split_at_new_onsets(incidents: list[ScopeIncident], members: list[int]) -> list[list[int]]:
    """``members`` of one linked group cut in time where a fault begins (:func:`onsets`) after every onset so far
    has ended: two faults in sequence that scopes flagged in between (a long-flagged gateway, a brute force
    between the two hosts) chained into one group. Each part holds the members starting before the next cut."""
    cuts: list[int] = []
    end = None
    for h in onsets(incidents, members):
        a = incidents[h]
        slack = a.window_ns
        if end is not None and a.start_ns > end + slack:
            cuts.append(a.start_ns - slack)
        end = a.end_ns if end is None else max(end, a.end_ns)
    if not cuts:
        return [members]
    parts: list[list[int]] = [[] for _ in range(len(cuts) + 1)]
    for m in members:
        parts[int(np.searchsorted(cuts, incidents[m].start_ns, side="right"))].append(m)
    return [p for p in parts if p]


def primary_scope(members: list[ScopeIncident], scored: pd.DataFrame | None = None) -> ScopeIncident:
    """The scope that explains the cluster: a host when several of its paths or VMs are hit (of several such, one
    gone silent, else the one with the most retransmissions beyond its usual that its pairs with the others leave
    unexplained, then the largest share of busy paths losing, then hop-delay growth, else the one most of the hit VMs
    and host pairs name: a link's far end sees its conversations fail too), else the one host pair or VM, else the
    strongest member. ``scored``: every scored window."""
    by_type: dict[str, list[ScopeIncident]] = {}
    for m in members:
        by_type.setdefault(m.scope_type, []).append(m)
    hit = {(m.scope_type, m.scope): m.hosts for m in members if m.scope_type in ("host_pair", "vm")}
    tokens = Counter(h for hosts in hit.values() for h in hosts)
    qualified = []
    for host, _ in tokens.most_common():
        pairs = {m.scope for m in by_type.get("host_pair", []) if host in m.hosts}
        vms = {m.scope for m in by_type.get("vm", []) if host in m.hosts}
        host_rows = [m for m in by_type.get("host", []) if m.scope == host]
        if host_rows and (len(pairs) >= 2 or len(vms) >= 2):
            qualified.append(max(host_rows, key=lambda m: m.score))
    silent = [m for m in qualified if _silent_windows(m) >= SILENT_WINDOWS]
    if silent:  # a host gone silent is where the hole is: its peers' own traffic goes on
        return max(silent, key=_silent_windows)
    if len(qualified) > 1 and scored is not None and "retransmissions" in scored:
        start, end = min(m.start_ns for m in members), max(m.end_ns for m in members)
        inside = scored[scored["window_start_ns"].between(start, end - 1)]
        names = [m.scope for m in qualified]
        for evidence in (_unexplained_retransmissions, _lossy_path_share, _unexplained_delay):
            own = [evidence(scored, inside, h, [g for g in names if g != h]) for h in names]
            best = int(np.argmax(own))
            if own[best] > max(o for i, o in enumerate(own) if i != best):
                return qualified[best]
    if qualified:
        return qualified[0]
    for stype in ("host_pair", "vm", "host", "capture_point"):
        if len(by_type.get(stype, [])) == 1:
            return by_type[stype][0]
    return max(members, key=lambda m: (m.score, -SCOPE_ORDER.get(m.scope_type, 9)))


def _unexplained_retransmissions(scored: pd.DataFrame, inside: pd.DataFrame, host: str, others: list[str]) -> float:
    """Retransmissions of ``host``'s windows ``inside`` the cluster's span that its pairs with ``others`` do not
    account for, beyond what the host usually has in as many windows (:func:`_observed_and_usual`). A lossy host
    uplink loses on every path through it; the host at the far end of one of those paths sees that path's loss too,
    but none on its own other paths beyond its everyday loss (a gateway carries every internet path's ambient loss
    all day)."""
    pairs = {"-".join(sorted((host, g))) for g in others}
    mine = _retransmissions_per_window(scored, "host", {host})
    unexplained = mine.sub(_retransmissions_per_window(scored, "host_pair", pairs), fill_value=0).clip(lower=0)
    observed, usual = _observed_and_usual(unexplained, inside)
    return observed - usual


def _lossy_path_share(scored: pd.DataFrame, inside: pd.DataFrame, host: str, others: list[str]) -> float:
    """Of ``host``'s paths to every other host that carried at least :data:`BUSY_PATH_SEGMENTS` data segments
    ``inside`` the span, the share that retransmitted well beyond their usual (:data:`LOSSY_PATH_Z`). A lossy uplink
    loses on every busy path through it; the far end of one of them keeps its other busy paths clean (with three
    hosts hit pairwise, every path is between candidates and none is left unexplained). ``others``, unused, keeps the
    evidence functions' one signature."""
    hosts = set(scored.loc[scored["scope_type"] == "host", "scope"]) - {host}
    names = {"-".join(sorted((host, g))) for g in hosts}
    mine = inside[(inside["scope_type"] == "host_pair") & inside["scope"].isin(names)]
    segments = mine.groupby("scope")["tcp_data_packets"].sum()
    busy = segments[segments >= BUSY_PATH_SEGMENTS].index
    if not len(busy):
        return 0.0
    rows = scored[(scored["scope_type"] == "host_pair") & scored["scope"].isin(busy)]
    lossy = []
    for _, per_window in rows.groupby("scope")[["window_start_ns", "retransmissions"]]:
        observed, usual = _observed_and_usual(per_window.groupby("window_start_ns")["retransmissions"].sum(), inside)
        lossy.append((observed - usual) / np.sqrt(usual + 1.0) >= LOSSY_PATH_Z)
    return float(np.mean(lossy))


def _retransmissions_per_window(df: pd.DataFrame, scope_type: str, scopes: set[str]) -> pd.Series:
    rows = df[(df["scope_type"] == scope_type) & df["scope"].isin(scopes)]
    return rows.groupby("window_start_ns")["retransmissions"].sum()


def _observed_and_usual(per_window: pd.Series, inside: pd.DataFrame) -> tuple[float, float]:
    """``per_window``'s total over the windows of ``inside``'s span, and its usual total over as many windows: its
    mean over the windows outside the span, each capped at their :data:`USUAL_CAP_Q` quantile (an earlier burst is no
    everyday rate)."""
    t = inside["window_start_ns"]
    span = (per_window.index >= t.min()) & (per_window.index <= t.max())
    during, outside = per_window[span], per_window[~span]
    usual = float(outside.clip(upper=outside.quantile(USUAL_CAP_Q)).mean()) if len(outside) else 0.0
    return float(during.sum()), usual * len(during)


def _unexplained_delay(scored: pd.DataFrame, inside: pd.DataFrame, host: str, others: list[str]) -> float:
    """The most a one-way hop delay grew (span's worst over the pair's usual) on ``host``'s paths to hosts not among
    ``others``: a queue on a host's uplink delays its every path, the far end's other paths not at all."""
    col = "hop_delay_worst_p50_ms"
    if col not in scored:
        return 0.0
    hosts = set(scored.loc[scored["scope_type"] == "host", "scope"]) - {host, *others}
    pairs = {"-".join(sorted((host, g))) for g in hosts}
    mine = scored[(scored["scope_type"] == "host_pair") & scored["scope"].isin(pairs)]
    usual = mine.groupby("scope")[col].median()
    worst = inside[(inside["scope_type"] == "host_pair") & inside["scope"].isin(pairs)].groupby("scope")[col].max()
    growth = (worst / usual.reindex(worst.index).where(lambda u: u > 0)).dropna()
    return float(growth.max()) if len(growth) else 0.0


SILENT_WINDOWS = 2
"""Windows at most :data:`SILENCED` of a host's usual packets in which it has gone silent (one is a lull)."""


def _silent_windows(m: ScopeIncident) -> int:
    """The incident's windows that carried at most :data:`SILENCED` of the scope's usual packets."""
    return int((m.rows["packets_ratio"] <= SILENCED).sum()) if "packets_ratio" in m.rows else 0


def magnitude(rows: pd.DataFrame, quiet: pd.DataFrame) -> dict[str, float]:
    """Size of the fault over its flagged windows, against the scope's unflagged windows."""
    s = rows.sum(numeric_only=True)
    data = float(s.get("tcp_data_packets", 0.0))
    out: dict[str, float] = {
        "seconds": float(rows["window_s"].sum()),
        "packets": float(s.get("packets", 0.0)),
        "retransmissions": float(s.get("retransmissions", 0.0)),
        "retransmission_rate": float(s.get("retransmissions", 0.0)) / data if data else 0.0,
        "dup_acks": float(s.get("dup_acks", 0.0)),
        "out_of_order": float(s.get("out_of_order", 0.0)),
        "lost_packets": float(s.get("matched_loss", 0.0)) or float(s.get("lost_segments", 0.0)),
        "rst_packets": float(s.get("rst_packets", 0.0)),
        "reset_connections": float(s.get("reset_connections", 0.0)),
        "connections": float(s.get("connections", 0.0)),
        "handshake_failures": float(s.get("handshake_failures", 0.0)),
        "syn_unanswered": float(s.get("syn_unanswered", 0.0)),
        "zero_windows": float(s.get("zero_windows", 0.0)),
        "silent_service_attempts": float(rows["silent_service_attempts"].max())
        if "silent_service_attempts" in rows
        else 0.0,
        "data_retransmission_rate_max": float(rows["retransmission_rate"].max()),
        "icmp_unreachable": float(s.get("icmp_unreachable", 0.0)),
        "burstiness_max": float(rows["burstiness"].max()),
        "max_packets_per_ms": float(rows["max_packets_per_ms"].max()),
    }
    matched = float(s.get("matched_packets", 0.0))
    out["matched_loss_rate"] = float(s.get("matched_loss", 0.0)) / matched if matched else 0.0
    out["rtt_p99_ms"] = float(rows["handshake_rtt_p99_ms"].max())
    base_rtt = float(quiet["handshake_rtt_p99_ms"].median()) if len(quiet) else np.nan
    out["rtt_p99_vs_baseline"] = fold(out["rtt_p99_ms"], base_rtt) or 1.0
    out["handshake_rtt_ratio_max"] = float(rows["handshake_rtt_ratio"].max())
    out["hop_delay_ratio_max"] = float(rows["hop_delay_ratio"].max())
    base_pps = float(quiet["packets_per_s"].median()) if len(quiet) else np.nan
    out["packets_vs_baseline"] = fold(float(rows["packets_per_s"].mean()), base_pps) or 1.0
    # most flagged windows: a black hole's incident ends with its senders' burst of retries
    out["median_packets_vs_baseline"] = fold(float(rows["packets_per_s"].median()), base_pps) or 1.0
    out["baseline_packets_per_s"] = base_pps if np.isfinite(base_pps) else 0.0
    return out


def fault_type(m: dict[str, float]) -> str:
    """The kind of fault its magnitude points to (checked from the most to the least specific)."""
    if m.get("icmp_unreachable", 0.0) >= max(REFUSALS, REFUSAL_SHARE * m.get("connections", 0.0)):
        return "unreachable"
    silenced = (
        m.get("median_packets_vs_baseline", m["packets_vs_baseline"]) <= SILENCED
        and m.get("baseline_packets_per_s", 0.0) >= MIN_OBSERVABLE_PACKETS
        and m["retransmissions"] + m["syn_unanswered"] >= 3
    )
    if (
        (m["matched_loss_rate"] >= 0.5 and m["lost_packets"] >= 5)
        or (m["syn_unanswered"] >= 3 and m["packets_vs_baseline"] < 0.5)
        or silenced
    ):
        return "black_hole"
    resets = m.get("reset_connections", 0.0)  # benign teardowns reset some connections: a storm resets most
    if (resets >= 10 and resets >= 0.5 * max(m.get("connections", 0.0), 1.0)) or (
        m["rst_packets"] >= 10 and m["rst_packets"] >= 0.1 * max(m["packets"], 1.0)
    ):
        return "reset_storm"
    if max(m["rtt_p99_vs_baseline"], m["handshake_rtt_ratio_max"], m["hop_delay_ratio_max"]) >= 3 and (
        m["retransmission_rate"] < 0.02
    ):
        return "latency"
    # a client retrying a server that never answers: its SYNs are resent, its data is not
    if (
        m.get("silent_service_attempts", 0.0) >= SILENT_SERVICE_ATTEMPTS
        and m["lost_packets"] == 0
        and (m.get("data_retransmission_rate_max", 0.0) < 0.02)
    ):
        return "silent_service"
    if m["retransmissions"] > 0 or m["lost_packets"] > 0:
        return "loss"
    if m["dup_acks"] > 0 or m.get("out_of_order", 0.0) > 0:  # segments arrived, in another order: nothing was resent
        return "reordering"
    if m["burstiness_max"] >= 20 and m["max_packets_per_ms"] >= MICROBURST_PACKETS_PER_MS:
        return "microburst"
    if m["zero_windows"] > 0:
        return "zero_window"
    return "other"


def fault_findings(scored: pd.DataFrame, vm_hosts: dict[str, str], model: ModelRef,
                   routers: dict[str, str] | None = None) -> list[Finding]:  # fmt: skip
    """Fault incidents as findings (most severe, then highest score, first). ``routers``: subnet router addresses →
    the gateway host they live on (a router address's windows are its host's evidence, and named at it)."""
    if scored.empty or not (scored["flag"] == 1).any():
        return []
    routers = routers or {}
    incidents = scope_incidents(scored)
    found = [_finding(scored, members, model, routers) for members in cluster(incidents, vm_hosts | routers)]
    rank = {"high": 0, "medium": 1, "low": 2}
    found.sort(key=lambda f: (rank[f.severity], -f.score, f.start_ns, f.scope))
    return found


def refusing_host(members: list[ScopeIncident], routers: dict[str, str] | None = None) -> ScopeIncident | None:
    """The host member (or subnet router address, in ``routers``) that took part in the most of the network's
    refusals (ICMP destination unreachable from a router); None without any. A router's refusals name it as where
    the path ends, and every refused host shares that one end."""
    routers = routers or {}
    hosts = [m for m in members if (m.scope_type == "host" or (m.scope_type == "vm" and m.scope in routers))
             and "icmp_unreachable" in m.rows]  # fmt: skip
    best = max(hosts, key=lambda m: (float(m.rows["icmp_unreachable"].sum()), m.score), default=None)
    return best if best is not None and float(best.rows["icmp_unreachable"].sum()) > 0 else None


def _measured(scored: pd.DataFrame, p: ScopeIncident) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """A scope's windows (in time order), its unflagged ones and the incident's magnitude against them."""
    all_rows = scored[(scored["scope_type"] == p.scope_type) & (scored["scope"] == p.scope)]
    all_rows = all_rows.sort_values("window_start_ns", kind="stable")
    quiet = all_rows[all_rows["flag"] == 0]
    return all_rows, quiet, magnitude(p.rows, quiet)


def _finding(scored: pd.DataFrame, members: list[ScopeIncident], model: ModelRef, routers: dict[str, str]) -> Finding:
    p = primary_scope(members, scored)
    all_rows, quiet, mag = _measured(scored, p)
    if (r := refusing_host(members, routers)) is not None and r is not p:  # retries into a cut: the cut explains
        r_rows, r_quiet, r_mag = _measured(scored, r)
        if fault_type(r_mag) == "unreachable":
            p, all_rows, quiet, mag = r, r_rows, r_quiet, r_mag
    rows = p.rows
    peak = rows.loc[rows["score"].idxmax()]
    tail_values = pd.concat([m.rows["benign_tail"] for m in members]).to_numpy(np.float64)
    tail = float(np.nanmin(tail_values)) if np.isfinite(tail_values).any() else np.nan
    catalogue = {k: v for k, v in FAULT_FEATURES.items() if k in scored.columns}
    baseline = quiet[list(catalogue)].median() if len(quiet) else None
    spread = spreads(quiet, list(catalogue))
    related = [
        {"scope_type": m.scope_type, "scope": m.scope, "start_ns": m.start_ns, "end_ns": m.end_ns,
         "windows": len(m.rows), "score": m.score}
        for m in members if m is not p
    ]  # fmt: skip
    related.sort(key=lambda r: (SCOPE_ORDER.get(str(r["scope_type"]), 9), str(r["scope"])))
    evidence: dict[str, Any] = {
        "magnitude": mag,
        "summary_features": deviations(peak, baseline, None, catalogue, spread),
        "related_scopes": related,
        "benign_tail": None if not np.isfinite(tail) else tail,
        "timeline": timeline(all_rows),
    }
    windows = len(rows)
    kind = fault_type(mag)
    sev = _capped(kind, severity(windows, tail, sustained=SUSTAINED_WINDOWS), evidence, rows, quiet)
    in_vm = p.scope_type == "vm" and "/" in p.scope
    scope_type, scope = p.scope_type, p.scope
    if scope_type == "vm" and scope in routers:  # a subnet's router address: the gateway's interface there
        scope_type, scope, evidence["router_address"] = "host", routers[scope], scope
    return build_finding(
        "fault",
        kind,
        id_parts=("fault", scope_type, scope, p.start_ns),
        scope_type=scope_type,
        scope=scope,
        tenant=p.scope.split("/", 1)[0] if in_vm else "",
        vm=p.scope.split("/", 1)[1] if in_vm else "",
        capture_point=p.scope if p.scope_type == "capture_point" else "",
        start_ns=p.start_ns,
        end_ns=p.end_ns,
        windows=windows,
        score=float(rows["score"].max()),
        threshold=float(peak["threshold"]),
        severity=sev,
        model=model,
        evidence=evidence,
        summarize=fault_summary,
    )


def _capped(kind: str, sev: str, evidence: dict[str, Any], rows: pd.DataFrame, quiet: pd.DataFrame) -> str:
    """Severity after the evidence rules: loss without the minimum evidence of loss, and reordering, stay low
    (``evidence`` gets ``loss_evidence`` and, when loss falls short, ``insufficient_evidence``)."""
    if kind == "reordering":
        return "low"
    if kind != "loss":
        return sev
    ev = loss_evidence(rows, quiet)
    evidence["loss_evidence"] = ev
    if loss_shown(ev) is not None:
        return sev
    evidence["insufficient_evidence"] = shortfall(ev)
    return "low"


_WHAT = {
    "loss": "dropped packets",
    "reordering": "reordered packets",
    "latency": "delayed packets",
    "microburst": "saw a microburst",
    "reset_storm": "saw a reset storm",
    "black_hole": "black-holed traffic",
    "unreachable": "was refused by the network",
    "silent_service": "retried a server that never answered",
    "zero_window": "stalled on zero windows",
    "other": "behaved abnormally",
}
_WHERE = {"host": "link {} (host uplink)", "host_pair": "path {}", "vm": "VM {}", "capture_point": "capture point {}"}


def fault_summary(f: Finding) -> str:
    """One sentence: where, when, what, how much."""
    m = f.evidence.get("magnitude", {})
    where = _WHERE.get(f.scope_type, "{}").format(f.scope)
    text = f"{where} {_WHAT.get(f.type, 'behaved abnormally')} from {hhmmss(f.start_ns)} to {hhmmss(f.end_ns)} UTC"
    parts = []
    if m.get("retransmissions"):
        parts.append(f"{m['retransmission_rate']:.1%} retransmissions ({m['retransmissions']:,.0f})")
    if m.get("lost_packets"):
        parts.append(f"{m['lost_packets']:,.0f} packets lost")
    if m.get("rtt_p99_vs_baseline", 1.0) >= 1.5:
        parts.append(f"RTT p99 {m['rtt_p99_vs_baseline']:.1f}x baseline")
    if f.type == "reset_storm":
        parts.append(
            f"{m.get('rst_packets', 0):,.0f} RSTs, {m.get('reset_connections', 0):,.0f} live connections reset"
        )
    if f.type == "black_hole":
        parts.append(f"{m.get('syn_unanswered', 0):,.0f} unanswered SYNs")
    if f.type == "unreachable":
        parts.append(f"{m.get('icmp_unreachable', 0):,.0f} ICMP destination unreachable (a route or filter refusing "
                     f"the traffic), {m.get('syn_unanswered', 0):,.0f} unanswered SYNs")  # fmt: skip
    if f.type == "silent_service":
        attempts = m.get("silent_service_attempts", 0)
        parts.append(f"{attempts:,.0f} connection attempts to one service in {SILENT_SPAN_S:g} s, none answered")
    if f.type == "reordering":
        parts.append(f"{m.get('dup_acks', 0):,.0f} duplicate ACKs, {m.get('out_of_order', 0):,.0f} out-of-order "
                     "packets, no retransmission (reordering, not loss)")  # fmt: skip
    if f.type == "microburst":
        parts.append(f"{m.get('max_packets_per_ms', 0):,.0f} packets in 1 ms ({m.get('burstiness_max', 0):,.0f}x mean)")
    related = f.evidence.get("related_scopes", [])
    if related:
        parts.append(f"also seen on {len(related)} related scope{'s' if len(related) != 1 else ''}")
    short = f.evidence.get("insufficient_evidence")
    if short:
        parts.append(f"too little evidence of loss ({short})")
    return text + (": " + ", ".join(parts) if parts else "") + "."
