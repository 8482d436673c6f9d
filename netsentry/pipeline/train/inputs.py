"""What a kind's detector sees: its feature columns, their monotonic constraints, which may stand alone as
evidence, and whom each window is about."""

from __future__ import annotations

import numpy as np
import pandas as pd

from netsentry.pipeline.features.faults.catalogue import FAULT_FEATURES, FAULT_MONOTONIC
from netsentry.pipeline.features.tenant.catalogue import MODEL_FEATURES, TENANT_FEATURES

CONTEXT_COLUMNS = ("observed_s", "matched_packets", "retransmitting_flows")
"""Catalogued columns that describe a window rather than behaviour; not model inputs (``matched_packets`` counts
packets seen at several taps: zero for every single-tap capture, whatever its health; ``retransmitting_flows`` is
read by inspect's minimum evidence of loss, and models trained before it existed must keep their inputs)."""


def feature_columns(kind: str) -> list[str]:
    """Model inputs of a kind, in catalogue order."""
    if kind == "compromise":
        return list(MODEL_FEATURES)
    return [c for c in catalogue(kind) if c not in CONTEXT_COLUMNS]


def monotonic_constraints(kind: str) -> dict[str, int]:
    """Feature name → +1/-1 for the boosted trees of a kind."""
    if kind == "compromise":
        return {}  # why: constraints cost the transfer to real captures; see docs/experiments.md#monotonic-constraints
    return FAULT_MONOTONIC


def catalogue(kind: str) -> dict[str, str]:
    """Every catalogued column of a kind's feature table and its description."""
    if kind == "compromise":
        return TENANT_FEATURES
    return FAULT_FEATURES


def evidence_columns(kind: str, features: list[str]) -> list[str]:
    """Features that may stand alone as evidence in a transplant. Compromise: not shares of a VM's flows (a share
    of 1 is two connections of an idle client as much as a brute force). Faults: symptoms only
    (:data:`FAULT_MONOTONIC` +1), not traffic volumes (a quiet window alone is no fault).
    See docs/experiments.md#evidence-columns."""
    if kind == "compromise":
        return [c for c in features if "_share" not in c and not c.startswith("failed_ratio")]
    return [c for c in features if monotonic_constraints(kind).get(c, 0) > 0]


def entity_keys(df: pd.DataFrame, kind: str) -> np.ndarray:
    """Who each window is about: tenant and address of a VM (compromise), scope type and scope (faults)."""
    cols = ("tenant", "ip") if kind == "compromise" else ("scope_type", "scope")
    if not all(c in df.columns for c in cols):
        return np.arange(len(df)).astype(str)  # unknown: every row its own entity (no context negatives)
    return (df[cols[0]].astype(str) + "/" + df[cols[1]].astype(str)).to_numpy()
