"""What a capture was too short (or too thin) to judge, per scope: reported as not judged, never as clean.

A beacon needs :data:`BEACON_MIN_IATS` gaps between starts, ``*_vs_baseline`` a window of the entity's own history,
a sustained verdict :data:`SUSTAINED_WINDOWS` windows, and any verdict :data:`MIN_CONNECTIONS` connections.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.units import NS_PER_S
from netsentry.pipeline.features.tenant.catalogue import BEACON_MIN_IATS, BEACON_MIN_PERIOD_S, FLOW_COLUMNS
from netsentry.pipeline.features.tenant.endpoints import flow_sides, local_entities
from netsentry.pipeline.inspect.compromise import MIN_CONNECTIONS, SUSTAINED_WINDOWS
from netsentry.pipeline.inspect.findings import Finding

WHATS = ("compromise", "beacon", "baseline", "sustained")


@dataclass(frozen=True)
class NotJudged:
    """One behaviour of one scope the capture could not judge, and why (``needed_s`` None: not a duration)."""

    scope: str
    ip: str
    what: str
    reason: str
    observed_s: float
    needed_s: float | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def compromise_not_judged(
    workspace: Path, before: pd.DataFrame, scored: pd.DataFrame, found: list[Finding], window_s: float, hop_s: float
) -> list[NotJudged]:
    """Everything the compromise side could not judge: ``before``/``scored`` are the windows before/after the
    support rule, ``found`` its findings."""
    capture_windows = int(scored["window_start_ns"].nunique()) if len(scored) else 0
    items = thin_scopes(before, scored) + beacon_scopes(workspace) + baseline_scopes(scored, window_s, hop_s)
    capture_s = _presence_s(scored) if len(scored) else 0.0
    items += sustained_scopes(found, capture_windows, capture_s, window_s, hop_s)
    return sorted(items, key=lambda j: (j.scope, WHATS.index(j.what)))


def _presence_s(rows: pd.DataFrame) -> float:
    """Seconds the capture saw the scope: from its first flow to the end of its last covered window."""
    return float((rows["history_s"] + rows["observed_s"]).max())


def thin_scopes(before: pd.DataFrame, after: pd.DataFrame) -> list[NotJudged]:
    """Scopes whose every flagged window the support rule dropped: flagged on too few connections to judge."""
    if before.empty or "flag" not in before.columns:
        return []
    still = set(after.loc[after["flag"] == 1, "scope"])
    flagged = before[(before["flag"] == 1) & ~before["scope"].isin(still)]
    out = []
    for scope, rows in flagged.groupby("scope", sort=True):
        most = int(rows["active_flows"].max())
        reason = f"flagged on {most} connection(s) at most in a window; a verdict needs >= {MIN_CONNECTIONS}"
        out.append(NotJudged(str(scope), str(rows["ip"].iloc[0]), "compromise", reason, _presence_s(rows), None))
    return out


def baseline_scopes(scored: pd.DataFrame, window_s: float, hop_s: float) -> list[NotJudged]:
    """Scopes with enough connections whose ``*_vs_baseline`` never had a window of their own history to read."""
    if scored.empty:
        return []
    out = []
    for scope, rows in scored.groupby("scope", sort=True):
        if rows["active_flows"].max() < MIN_CONNECTIONS or (rows["history_s"] >= window_s).any():
            continue
        seen = _presence_s(rows)
        reason = f"seen for {seen:.1f} s; a baseline needs a {window_s:g} s window of its own history first"
        out.append(NotJudged(str(scope), str(rows["ip"].iloc[0]), "baseline", reason, seen, window_s + hop_s))
    return out


def sustained_scopes(
    found: list[Finding], capture_windows: int, capture_s: float, window_s: float, hop_s: float
) -> list[NotJudged]:
    """Compromise findings whose capture (``capture_s`` long) covers fewer windows than a sustained verdict needs."""
    if capture_windows >= SUSTAINED_WINDOWS:
        return []
    needed = window_s + (SUSTAINED_WINDOWS - 1) * hop_s
    reason = (
        f"the capture covers {capture_windows} window(s); sustained needs {SUSTAINED_WINDOWS} "
        f"({needed:g} s): severity reads flagged-in-every-covered-window as sustained"
    )
    return [
        NotJudged(f.scope, f.ip, "sustained", reason, capture_s, needed)
        for f in found
        if f.kind == "compromise" and f.type == "compromise"
    ]


def beacon_scopes(workspace: Path) -> list[NotJudged]:
    """Scopes with repeated outgoing starts to one (remote, port), at a timer-like pace, too few to score as a
    beacon because the capture ended before a timer of that period could show :data:`BEACON_MIN_IATS` gaps."""
    path = catalog.path(workspace, catalog.FLOWS)
    if not path.exists():
        return []
    flows = pq.read_table(path, columns=list(FLOW_COLUMNS))
    if flows.num_rows == 0:
        return []
    sides = local_entities(flow_sides(flows))
    capture_end = int(sides["end"].max())
    out_sides = sides[sides["out"].to_numpy()]
    g = out_sides.groupby(["entity", "remote", "port"], observed=True)["start"]
    svc = pd.DataFrame({"n": g.size(), "first": g.min(), "last": g.max()}).reset_index()
    svc = svc[(svc["n"] >= 2) & (svc["n"] <= BEACON_MIN_IATS)]
    svc = svc.assign(gap_s=(svc["last"] - svc["first"]) / NS_PER_S / (svc["n"] - 1))
    svc = svc.assign(held_s=(capture_end - svc["first"]) / NS_PER_S, needed_s=svc["gap_s"] * BEACON_MIN_IATS)
    svc = svc[(svc["gap_s"] >= BEACON_MIN_PERIOD_S) & (svc["held_s"] < svc["needed_s"])]
    ips = sides.drop_duplicates("entity").set_index("entity")["ip"]
    out = []
    for entity, rows in svc.groupby("entity", sort=True):
        top = rows.sort_values(["n", "gap_s"], ascending=[False, True]).iloc[0]
        reason = (
            f"{len(rows)} service(s) repeated at a timer's pace, e.g. {top['remote']}:{int(top['port'])} "
            f"{int(top['n'])} times {top['gap_s']:.1f} s apart; a beacon needs {BEACON_MIN_IATS} gaps"
        )
        out.append(
            NotJudged(str(entity), str(ips.get(entity, "")), "beacon", reason, float(top["held_s"]),
                      float(np.round(top["needed_s"], 3)))
        )  # fmt: skip
    return out
