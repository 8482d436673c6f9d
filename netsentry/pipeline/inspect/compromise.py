"""Compromise findings: one per VM (or address) with flagged tenant windows, with its evidence."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from netsentry.pipeline.core.tracking import ModelRef
from netsentry.pipeline.features.tenant.catalogue import TENANT_FEATURES
from netsentry.pipeline.inspect.findings import Finding, build_finding, hhmmss
from netsentry.pipeline.inspect.flow_evidence import FlowIndex
from netsentry.pipeline.inspect.scoring import deviations, severity, spreads, timeline

SUSTAINED_WINDOWS = 3
"""Flagged sliding windows for a sustained verdict (3 windows at a 10 s hop: the behaviour lasted 30 s or more)."""

EVIDENCE_FEATURES = {k: v for k, v in TENANT_FEATURES.items() if k not in ("observed_s", "history_s")}

MIN_CONNECTIONS = 3
"""Connections (``active_flows``) a window needs before a compromise verdict on it. An address whose only traffic
is one SYN, as each of a spoofed flood's 37,000 sources, shows no behaviour to judge: the simulated cloud a model
learns from has no benign failed connections, so one failed connection alone reads as out of range."""


def require_support(scored: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The scored windows with flags removed from windows whose support — connections plus DNS queries sent (a
    one-socket tunnel is one flow but hundreds of queries) — is under :data:`MIN_CONNECTIONS`, and how many scopes
    lost every flag that way (reported as not judged, not as findings). A window holding an established connection
    that has lasted a whole window, or a mining-protocol call, is judged whatever its count."""
    if scored.empty or "active_flows" not in scored.columns:
        return scored, 0
    support = scored["active_flows"].to_numpy(np.float64)
    if "dns_queries_per_min" in scored.columns and "observed_s" in scored.columns:
        queries = scored["dns_queries_per_min"].to_numpy(np.float64) * scored["observed_s"].to_numpy(np.float64) / 60
        support = support + np.rint(queries)
    held = scored["idle_persistent_flows_out"].to_numpy(np.float64) if "idle_persistent_flows_out" in scored else 0.0
    mining = (
        scored["mining_messages_out_per_min"].to_numpy(np.float64) if "mining_messages_out_per_min" in scored else 0.0
    )
    # an established connection held open for a window (a pool's job channel, a C2 session) is behaviour over time;
    # one mining-protocol call (a pool login, a share) is decisive evidence on its own
    thin = (scored["flag"] == 1) & (support < MIN_CONNECTIONS) & ~(held >= 1) & ~(mining > 0)
    if not thin.any():
        return scored, 0
    before = set(scored.loc[scored["flag"] == 1, "scope"])
    out = scored.copy()
    out.loc[thin, "flag"] = 0
    return out, len(before - set(out.loc[out["flag"] == 1, "scope"]))


def sustained_windows(capture_windows: int) -> int:
    """Flagged windows that count as sustained: :data:`SUSTAINED_WINDOWS`, or every window a shorter capture covers
    (a rule the capture cannot meet would turn every short-capture verdict into a guess at the low end)."""
    return max(1, min(SUSTAINED_WINDOWS, capture_windows))


def compromise_findings(scored: pd.DataFrame, flows: FlowIndex | None, model: ModelRef) -> list[Finding]:
    """Group flagged tenant windows per scope into findings (most severe, then highest score, first)."""
    found: list[Finding] = []
    if scored.empty or not (scored["flag"] == 1).any():
        return found
    flagged_scopes = scored.loc[scored["flag"] == 1, "scope"].unique()
    catalogue = {k: v for k, v in EVIDENCE_FEATURES.items() if k in scored.columns}
    unflagged = scored[scored["flag"] == 0]
    spread = spreads(unflagged, list(catalogue))
    by_scope = scored.groupby("scope", sort=False).indices
    unflagged_at = unflagged.groupby("window_start_ns", sort=False).indices  # row positions by window start
    sustained = sustained_windows(int(scored["window_start_ns"].nunique()))
    for scope in sorted(flagged_scopes):
        rows = scored.iloc[by_scope[scope]].sort_values("window_start_ns", kind="stable")
        found.append(_finding(unflagged, unflagged_at, rows, flows, model, catalogue, spread, sustained))
    rank = {"high": 0, "medium": 1, "low": 2}
    found.sort(key=lambda f: (rank[f.severity], -f.score, f.scope))
    return found


def _finding(
    unflagged: pd.DataFrame,
    unflagged_at: dict[Any, np.ndarray],
    rows: pd.DataFrame,
    flows: FlowIndex | None,
    model: ModelRef,
    catalogue: dict[str, str],
    spread: pd.Series,
    sustained: int = SUSTAINED_WINDOWS,
) -> Finding:
    hit = rows[rows["flag"] == 1]
    first, last = hit.iloc[0], hit.iloc[-1]
    start = int(first["window_start_ns"])
    end = int(last["window_start_ns"] + last["window_s"] * 1e9)
    peak = hit.loc[hit["score"].idxmax()]
    tail = float(np.nanmin(hit["benign_tail"].to_numpy(np.float64))) if hit["benign_tail"].notna().any() else np.nan
    before = rows[(rows["flag"] == 0) & (rows["window_start_ns"] < start)]
    quiet = before if len(before) else rows[rows["flag"] == 0]
    names = list(catalogue)
    baseline = quiet[names].median() if len(quiet) else None
    tenant = str(peak["tenant"])
    # unflagged windows of other scopes (of the same tenant, when it is one) at the peak window's start
    same = unflagged.iloc[unflagged_at.get(peak["window_start_ns"], [])]
    peer_rows = same[
        (same["scope"] != peak["scope"])
        & ((same["tenant"] == tenant) if tenant not in ("", "external", "unknown") else True)
    ]
    peers = peer_rows[names].median() if len(peer_rows) else None
    ips = [a for a in str(peak["ip"]).split(";") if a]
    evidence: dict[str, Any] = {
        "summary_features": deviations(peak, baseline, peers, catalogue, spread),
        "first_window_start_ns": start,
        "last_window_start_ns": int(last["window_start_ns"]),
        "peak_window_start_ns": int(peak["window_start_ns"]),
        "benign_tail": None if not np.isfinite(tail) else tail,
        "baseline_windows": len(quiet),
        "peer_windows": len(peer_rows),
        "timeline": timeline(rows),
    }
    if flows is not None:
        first_seen = int(rows["window_start_ns"].iloc[0])
        evidence.update(flows.evidence(ips, start, end, str(peak["capture_point"]), since_ns=first_seen))
    sev = severity(len(hit), tail, sustained=sustained)
    return build_finding(
        "compromise",
        "compromise",
        id_parts=("compromise", peak["scope"], start),
        scope_type=str(peak["scope_type"]),
        scope=str(peak["scope"]),
        tenant=tenant,
        vm=str(peak["vm"]),
        ip=";".join(ips),
        capture_point=str(peak["capture_point"]),
        start_ns=start,
        end_ns=end,
        windows=len(hit),
        score=float(hit["score"].max()),
        threshold=float(peak["threshold"]),
        severity=sev,
        model=model,
        evidence=evidence,
        summarize=compromise_summary,
    )


UNMAPPED_TENANTS = ("", "external", "unknown")


def _counted(count: int, noun: str) -> str:
    """``3 hosts``, ``1 host``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def compromise_summary(f: Finding) -> str:
    """One sentence: who, since when, what changed most and the concrete counts."""
    mapped = f.scope_type == "vm" and f.tenant not in UNMAPPED_TENANTS
    who = f"{f.tenant}'s VM {f.vm}" if mapped else f"host {f.ip or f.vm or f.scope}"
    if mapped and f.ip and f.ip != f.vm:
        who += f" ({f.ip.replace(';', ', ')})"
    text = f"{who} looks compromised from {hhmmss(f.start_ns)} to {hhmmss(f.end_ns)} UTC"
    parts = []
    ports = [p for p in f.evidence.get("ports") or [] if p["flows"] > p.get("usual", 0.0)]
    if ports:
        p = ports[0]
        verb = "opened" if p["direction"] == "out" else "received"
        where = "to" if verb == "opened" else "from"
        service = f"{p['proto']}/{p['port']} connection"
        s = f"{verb} {_counted(p['flows'], service)} {where} {_counted(p['remotes'], 'host')}"
        s += f" (usually {p.get('usual', 0.0):,.0f} in as long)"
        if p.get("failed"):
            s += f", {p['failed'] / p['flows']:.0%} failed"
        parts.append(s)
    c = f.evidence.get("counts") or {}
    if c:
        outs = f"{_counted(c.get('flows_out', 0), 'connection')} out to {_counted(c.get('remote_ips_out', 0), 'host')}"
        ins = f"{c.get('flows_in', 0):,} in from {_counted(c.get('remote_ips_in', 0), 'host')}"
        parts.append(f"{outs} and {ins} in all")
    for feat in f.evidence.get("summary_features", [])[:1]:
        ratio, ref = (
            (feat.get("vs_baseline"), "its usual") if feat.get("vs_baseline") else (feat.get("vs_peers"), "its peers'")
        )
        base = feat.get("baseline") if ref == "its usual" else feat.get("peers")
        if ratio and ratio >= 1.5:
            parts.append(f"{feat['name']} {ratio:,.0f}x {ref}")
        elif base is not None:
            parts.append(f"{feat['name']} {feat['value']:,.3g} vs {base:,.3g} ({ref})")
    return text + (": " + "; ".join(parts) if parts else "") + "."
