"""Ground-truth labels (``labels.csv`` as ``netsentry simulate`` writes it) and their join onto tenant windows.

A window is labelled 1 when a compromise label of its entity overlaps it by at least ``min(hop, label duration)``,
-1 (ambiguous: left out of training and metrics) when it overlaps by less, and 0 otherwise. The entity matches a
label by tenant and VM name when the label names a VM, else by address (real captures have no VM names).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from netsentry.pipeline.core.errors import InputNotFoundError, SchemaError

LABEL_COLUMNS = ("kind", "scenario", "scope_type", "scope", "start_ns", "end_ns", "tenant", "vm", "vni", "detail")
REQUIRED = ("kind", "scenario", "scope_type", "scope", "start_ns", "end_ns")
KINDS = ("compromise", "fault")


def read_labels(path: str | Path) -> pd.DataFrame:
    """Read and check a labels CSV; optional columns (tenant, vm, vni, detail) are filled when absent."""
    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError("labels file not found", path=str(p))
    try:
        df = pd.read_csv(p, dtype={"tenant": str, "vm": str, "scope": str, "detail": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise SchemaError(f"{p}: not a labels CSV ({str(e).splitlines()[0]})") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise SchemaError(f"{p}: labels lack column(s) {', '.join(missing)}; expected {', '.join(LABEL_COLUMNS)}")
    bad_kind = sorted(set(df["kind"].astype(str)) - set(KINDS))
    if bad_kind:
        raise SchemaError(f"{p}: field 'kind' must be one of {', '.join(KINDS)}, got {', '.join(bad_kind)}")
    for c in ("start_ns", "end_ns"):
        v = pd.to_numeric(df[c], errors="coerce")
        if v.isna().any():
            row = int(np.flatnonzero(v.isna().to_numpy())[0]) + 2
            raise SchemaError(f"{p}: line {row}: field {c!r} must be an integer epoch time in ns")
        df[c] = v.astype(np.int64)
    if (df["end_ns"] < df["start_ns"]).any():
        row = int(np.flatnonzero((df["end_ns"] < df["start_ns"]).to_numpy())[0]) + 2
        raise SchemaError(f"{p}: line {row}: end_ns is before start_ns")
    for c in ("tenant", "vm", "detail"):
        if c not in df.columns:
            df[c] = ""
        df[c] = df[c].fillna("").astype(str)
    if "vni" not in df.columns:
        df["vni"] = 0
    df["scope"] = df["scope"].astype(str)
    return df[list(LABEL_COLUMNS)].reset_index(drop=True)


def label_tenant_windows(windows: pd.DataFrame, labels: pd.DataFrame, hop_s: float) -> pd.DataFrame:
    """Add ``label`` (int8: 1, 0, -1 ambiguous) and ``label_scenario`` to tenant windows."""
    out = windows.copy()
    label = np.zeros(len(out), np.int8)
    scenario = np.full(len(out), "", dtype=object)
    comp = labels[labels["kind"] == "compromise"]
    if len(out) and len(comp):
        ws = out["window_start_ns"].to_numpy(np.int64)
        we = ws + (out["window_s"].to_numpy(np.float64) * 1e9).astype(np.int64)
        tenant, vm, ip = (out[c].astype(str).to_numpy() for c in ("tenant", "vm", "ip"))
        for lab in comp.itertuples(index=False):
            by_name = (vm == lab.vm) & ((tenant == lab.tenant) if lab.tenant else True)
            who = by_name if lab.vm else ip == lab.scope
            if not who.any():
                continue
            ov = np.minimum(we, lab.end_ns) - np.maximum(ws, lab.start_ns)
            need = min(hop_s * 1e9, max(lab.end_ns - lab.start_ns, 1))
            pos = who & (ov >= need)
            amb = who & (ov > 0) & ~pos & (label != 1)
            label[amb] = -1
            label[pos] = 1
            scenario[pos] = np.where(scenario[pos] == "", lab.scenario, scenario[pos] + "+" + lab.scenario)
    out["label"] = label
    out["label_scenario"] = scenario.astype(str)
    return out
