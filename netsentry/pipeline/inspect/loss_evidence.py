"""Minimum evidence of loss: a ``loss`` incident is worth an operator's time (medium or high) only when its packets
show real loss, not one retransmission of the kind every healthy internet path has now and then.

Real loss is any of:

* at least :data:`MIN_SEGMENTS` retransmitted data segments (payload-carrying; SYN retries are not data) in at least
  :data:`MIN_FLOWS` connections (in one window: the fault windows count retransmitting connections per window);
* at least :data:`MIN_SEGMENTS` retransmitted data segments at a rate whose Wilson lower bound (95 %) is above the
  scope's own baseline rate (its unflagged windows) and above :data:`AMBIENT_LOSS_RATE`, what a healthy internet
  path loses now and then (a scope that carries mostly data-centre traffic has a baseline far below it);
* at least :data:`MIN_SEGMENTS` packets seen upstream and missing downstream between capture points.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

MIN_SEGMENTS = 3
"""why: one loss event costs a connection one or two retransmissions (a tail-loss probe, then the RTO retry)."""
MIN_FLOWS = 2
"""why: a lossy link or path drops packets of every connection through it; one connection alone may be its peer."""
AMBIENT_LOSS_RATE = 0.005
"""why: healthy internet paths lose ~0.01-0.5 % of packets (the range ``simulate`` draws its ambient loss from); one
connection resending at that rate says nothing about the link it crosses, however clean the rest of the scope is."""
WILSON_Z = 1.959964
"""why: the two-sided 95 % normal quantile; the rate must exceed the baseline beyond sampling chance."""


def wilson_lower(k: float, n: float, z: float = WILSON_Z) -> float:
    """Lower bound of the Wilson score interval for ``k`` successes in ``n`` trials (0 without trials)."""
    if n <= 0:
        return 0.0
    k = min(max(k, 0.0), n)
    p = k / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z2 / n))


def _data_retransmissions(rows: pd.DataFrame) -> float:
    """Retransmitted data segments: ``retransmission_rate`` is data retransmissions / ``tcp_data_packets``."""
    if rows.empty:
        return 0.0
    return float(round((rows["retransmission_rate"] * rows["tcp_data_packets"]).sum()))


def loss_evidence(rows: pd.DataFrame, quiet: pd.DataFrame) -> dict[str, float | None]:
    """The numbers the rule reads, over an incident's flagged ``rows`` against the scope's unflagged ``quiet`` ones.

    Distinct connections retransmitting data over the incident lie between ``retransmitting_flows`` (most in one
    window) and ``retransmitting_flows_at_most`` (summed over windows); both None for fault windows built before
    that column existed."""
    k = _data_retransmissions(rows)
    n = float(rows["tcp_data_packets"].sum())
    base_n = float(quiet["tcp_data_packets"].sum()) if len(quiet) else 0.0
    known = "retransmitting_flows" in rows and len(rows) > 0
    return {
        "data_retransmissions": k,
        "retransmitting_flows": float(rows["retransmitting_flows"].max()) if known else None,
        "retransmitting_flows_at_most": float(rows["retransmitting_flows"].sum()) if known else None,
        "data_packets": n,
        "lower_bound_retransmission_rate": wilson_lower(k, n),
        "baseline_retransmission_rate": _data_retransmissions(quiet) / base_n if base_n else 0.0,
        "matched_loss": float(rows["matched_loss"].sum()) if "matched_loss" in rows else 0.0,
    }


def loss_shown(ev: dict[str, Any]) -> str | None:
    """Which rule the evidence meets (``flows``, ``rate`` or ``matched``), or None."""
    k, flows = ev["data_retransmissions"], ev["retransmitting_flows"]
    if k >= MIN_SEGMENTS and flows is not None and flows >= MIN_FLOWS:
        return "flows"
    if k >= MIN_SEGMENTS and ev["lower_bound_retransmission_rate"] > _rate_floor(ev):
        return "rate"
    if ev["matched_loss"] >= MIN_SEGMENTS:
        return "matched"
    return None


def _rate_floor(ev: dict[str, Any]) -> float:
    """The rate a lower bound must clear: the scope's baseline, and never less than ambient internet loss."""
    return max(float(ev["baseline_retransmission_rate"]), AMBIENT_LOSS_RATE)


def _counted(x: float, what: str) -> str:
    """``2 flows``, ``1 flow``."""
    return f"{x:,.0f} {what}{'' if x == 1 else 's'}"


def shortfall(ev: dict[str, Any]) -> str:
    """Why the evidence falls short, in words (e.g. ``"2 retransmitted data segments in 1 flow"``)."""
    k, least, most = ev["data_retransmissions"], ev["retransmitting_flows"], ev["retransmitting_flows_at_most"]
    text = _counted(k, "retransmitted data segment") if k else "no retransmitted data segment"
    if k and least is not None:
        text += f" in {_counted(least, 'flow')}" if least == most else f" in {least:,.0f} to {_counted(most, 'flow')}"
    if k >= MIN_SEGMENTS:
        base = float(ev["baseline_retransmission_rate"])
        against = (
            f"the scope's baseline {base:.1%}"
            if base >= AMBIENT_LOSS_RATE
            else f"ambient internet loss {AMBIENT_LOSS_RATE:.1%} (the scope's baseline: {base:.2%})"
        )
        text += f", rate lower bound {ev['lower_bound_retransmission_rate']:.1%} not above {against}"
    if ev["matched_loss"]:
        text += f", {_counted(ev['matched_loss'], 'packet')} lost between capture points"
    return text
