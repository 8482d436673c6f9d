"""Synthetic training rows for supervised detectors: history-free copies and context transplants.

Why: with a handful of episodes per behaviour, boosted trees explain each episode by whatever splits it off first,
often incidental context, and miss the next one; a short real capture has no history. See
docs/experiments.md#context-transplants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from netsentry.models.scaling import signed_log1p

TRANSPLANT_COPIES = 4
"""Context transplants per positive training row (:func:`context_transplants`); 0 turns them off."""

Qualified = tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
Rows = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(rows, labels, synthetic) of one batch of training rows."""


def history_columns(features: list[str]) -> dict[str, float]:
    """Features that compare a window with the entity's own past, and their value when there is no past."""
    out = {}
    for c in features:
        if c.endswith("_vs_baseline"):
            out[c] = 1.0
        elif c.startswith("new_"):
            out[c] = 0.0
    return out


def without_history_copies(X: pd.DataFrame, y: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Each training window twice: as seen, and as if the capture had started with it (history features at their
    no-history values), so an attack going on when a capture began is still learnt as one. Copies sit next to
    their originals, so time-ordered folds keep them together (no leak into calibration).
    See docs/experiments.md#history-free-copies."""
    neutral = history_columns(list(X.columns))
    copy = X.copy()
    for c, v in neutral.items():
        copy[c] = v
    both = pd.concat([X.reset_index(drop=True), copy.reset_index(drop=True)]).sort_index(kind="stable")
    return both.reset_index(drop=True), np.repeat(np.asarray(y), 2)


def context_transplants(
    X: pd.DataFrame,
    y: np.ndarray,
    copies: int = TRANSPLANT_COPIES,
    keep: float = 0.5,
    quantile: float = 0.995,
    blocks: int = 4,
    seed: int = 0,
    evidence_columns: list[str] | None = None,
    negatives: int = 0,
    groups: np.ndarray | None = None,
    return_synthetic: bool = False,
    anchored: bool = False,
    qualified: Qualified = (),
) -> tuple[pd.DataFrame, np.ndarray] | tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Training rows plus ``copies`` transplants of each positive: a benign row of the same time block (one of
    ``blocks`` contiguous blocks) with part of the positive's *evidence* copied in — each feature beyond the benign
    rows' ``quantile`` range (among ``evidence_columns``; default all) is kept with probability ``keep`` (all of
    them when none was drawn). Why: the evidence, any part of it, in any VM's context, is the attack.
    Positives with no out-of-range feature get no copies. Copies follow their block's rows, so contiguous time
    folds (out-of-fold calibration) keep them with their originals.

    ``negatives`` (with ``groups``, the entity of each row): per positive, that many *context negatives* too, the
    positive with its evidence replaced by the values of a benign row of the same entity (any time), labelled 0.

    ``anchored``: every copy keeps the positive's *strongest* evidence (the feature furthest beyond the benign
    range, in signed-log units), and the first copy carries it alone.

    ``qualified`` (with ``negatives``): (counts, qualifiers) column groups. When a positive's evidence has both,
    that many *unqualified negatives* too: a benign row of the same entity (its block's when the entity has none)
    carrying the positive's counts without their qualifier, labelled 0.

    ``return_synthetic``: also return which rows are synthetic. See docs/experiments.md#context-transplants."""
    y = np.asarray(y)
    if copies <= 0 or not (y == 0).any():
        return (X, y, np.zeros(len(y), bool)) if return_synthetic else (X, y)
    values = X.to_numpy(np.float64)
    lo, hi = _evidence_bounds(values, y, X.columns, quantile, evidence_columns)
    maker = _Transplanter(
        values=values, lo=lo, hi=hi, copies=copies, keep=keep, negatives=negatives, anchored=anchored,
        qualified=_qualified_columns(X.columns, qualified), own_benign=_benign_rows_by_entity(y, groups, negatives),
        groups=groups, label_dtype=y.dtype, rng=np.random.default_rng(seed),
    )  # fmt: skip
    parts, labels, made = [], [], []
    for block in np.array_split(np.arange(len(y)), max(1, blocks)):
        parts.append(values[block])
        labels.append(y[block])
        made.append(np.zeros(len(block), bool))
        pool = block[y[block] == 0]
        if not len(pool):
            continue
        for i in block[y[block] == 1]:
            for rows, row_labels, synthetic in maker.rows_for(i, pool):
                parts.append(rows)
                labels.append(row_labels)
                made.append(synthetic)
    out = pd.DataFrame(np.concatenate(parts), columns=X.columns)
    if not return_synthetic:
        return out, np.concatenate(labels)
    return out, np.concatenate(labels), np.concatenate(made)


def _evidence_bounds(
    values: np.ndarray, y: np.ndarray, columns: pd.Index, quantile: float, evidence_columns: list[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the benign rows' ``quantile`` range; unbounded for columns that are no evidence."""
    lo, hi = np.quantile(values[y == 0], [1 - quantile, quantile], axis=0)
    if evidence_columns is not None:
        allowed = np.isin(np.asarray(columns, dtype=object), evidence_columns)
        lo, hi = np.where(allowed, lo, -np.inf), np.where(allowed, hi, np.inf)
    return lo, hi


def _benign_rows_by_entity(y: np.ndarray, groups: np.ndarray | None, negatives: int) -> dict[object, np.ndarray]:
    """Each entity's benign row numbers (empty when no negatives are asked for or entities are unknown)."""
    if negatives <= 0 or groups is None:
        return {}
    rows = np.flatnonzero(y == 0)
    return {g: rows[at] for g, at in pd.Series(rows).groupby(np.asarray(groups)[rows]).indices.items()}


def _qualified_columns(columns: pd.Index, qualified: Qualified) -> list[tuple[list[int], list[int]]]:
    """(counts, qualifiers) groups as column positions; groups with a side absent from the table dropped."""
    at = {c: j for j, c in enumerate(columns)}
    positions = [([at[c] for c in counts if c in at], [at[c] for c in quals if c in at]) for counts, quals in qualified]
    return [(c, q) for c, q in positions if c and q]


def _excess(row: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How far each value lies beyond ``[lo, hi]``, in signed-log units (negative inside; -inf for unbounded)."""
    with np.errstate(invalid="ignore"):
        v = signed_log1p(row)
        out = np.maximum(v - signed_log1p(hi), signed_log1p(lo) - v)
    return np.nan_to_num(out, nan=-np.inf)


@dataclass
class _Transplanter:
    """Draws a positive's synthetic rows: transplants, then unqualified negatives, then context negatives."""

    values: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    copies: int
    keep: float
    negatives: int
    anchored: bool
    qualified: list[tuple[list[int], list[int]]]
    own_benign: dict[object, np.ndarray]
    groups: np.ndarray | None
    label_dtype: np.dtype
    rng: np.random.Generator

    def rows_for(self, i: int, pool: np.ndarray) -> list[Rows]:
        """Synthetic rows of positive row ``i``, whose time block's benign rows are ``pool``."""
        evidence = (self.values[i] > self.hi) | (self.values[i] < self.lo)
        if not evidence.any():
            return []
        out = [self._transplants(i, pool, evidence)]
        own = self.own_benign.get(self.groups[i]) if self.own_benign else None  # this entity's benign rows
        out += self._unqualified_negatives(i, pool if own is None else own, evidence)
        if own is not None:
            out.append(self._context_negatives(i, own, evidence))
        return out

    def _transplants(self, i: int, pool: np.ndarray, evidence: np.ndarray) -> Rows:
        ctx = self.values[self.rng.choice(pool, self.copies)]
        take = np.tile(evidence, (self.copies, 1)) & (self.rng.random((self.copies, len(evidence))) < self.keep)
        take[~take.any(axis=1)] = evidence
        if self.anchored:
            strongest = int(np.argmax(np.where(evidence, _excess(self.values[i], self.lo, self.hi), -np.inf)))
            take[:, strongest] = True
            take[0] = False
            take[0, strongest] = True
        ctx[take] = np.broadcast_to(self.values[i], ctx.shape)[take]
        return ctx, np.ones(self.copies, self.label_dtype), np.ones(self.copies, bool)

    def _unqualified_negatives(self, i: int, donors: np.ndarray, evidence: np.ndarray) -> list[Rows]:
        out = []
        for counts, quals in self.qualified:
            if self.negatives > 0 and evidence[counts].any() and evidence[quals].any():
                unqualified = self.values[self.rng.choice(donors, self.negatives)]
                unqualified[:, counts] = self.values[i, counts]
                out.append(self._negatives(unqualified))
        return out

    def _context_negatives(self, i: int, own: np.ndarray, evidence: np.ndarray) -> Rows:
        stripped = np.tile(self.values[i], (self.negatives, 1))
        donors = self.values[self.rng.choice(own, self.negatives)]
        stripped[:, evidence] = donors[:, evidence]
        return self._negatives(stripped)

    def _negatives(self, rows: np.ndarray) -> Rows:
        return rows, np.zeros(self.negatives, self.label_dtype), np.ones(self.negatives, bool)
