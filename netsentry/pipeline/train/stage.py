"""Train a detector on a workspace's feature windows, evaluate it on later windows, log and register it in MLflow.

With labels the split is by time: windows that start in the last ``test_fraction`` of the time span are the test
set; training windows that reach into it are dropped (sliding windows overlap, they would leak). Ambiguous
windows (label -1) are in neither. Without labels every window trains an unsupervised detector, whose threshold
is calibrated on the latest windows (assumed benign). Pure parts (:func:`time_split`, :func:`fit_and_evaluate`)
do no I/O; :func:`run_train` reads the workspace and talks to MLflow through :mod:`netsentry.pipeline.core.tracking`.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from netsentry import __version__
from netsentry.models.base import Detector
from netsentry.models.registry import choose_auto, make_detector
from netsentry.models.scaling import signed_log1p
from netsentry.models.thresholds import fpr_tpr_at, threshold_for_fpr
from netsentry.pipeline.core.errors import ConfigError, NoUsableDataError
from netsentry.pipeline.core.io import manifest_digest
from netsentry.pipeline.features.stage import FAULT_WINDOWS, TENANT_WINDOWS, read_feature_table
from netsentry.pipeline.features.tenant.windows import MODEL_FEATURES, TENANT_FEATURES

KINDS = ("compromise", "faults")
TRANSPLANT_COPIES = 4
"""Context transplants per positive training row (:func:`context_transplants`); 0 turns them off."""
TRANSPLANT_KEEP = {"compromise": 0.6, "faults": 0.5}
"""Per kind, the chance each piece of evidence is kept in a transplant. Measured on ``mixed`` with the final
features, transfer to the real captures intact: compromise ROC-AUC 0.951 → 0.989, TPR at 1 % FPR 0.54 → 0.72,
test FPR 0.050 → 0.013 (keep 0.5: FPR 0.032); faults ROC-AUC 0.84 → 0.93 (keep 0.6: lower)."""
CONTEXT_NEGATIVES = {"compromise": 2, "faults": 0}
"""Per kind, context negatives per positive training row (:func:`context_transplants`). Measured on ``mixed``,
compromise, seeds 0-4: ROC-AUC 0.9893 → 0.9911 (mean; 0.9896-0.9918), TPR at 1 % FPR 0.725 → 0.783 (0.641-0.873);
4 negatives: 0.9874 and 0.765; donors from the positive's own time block only: 0.9850 and 0.618. Faults: ROC-AUC
0.951 → 0.934 (seed 0), a scope's fault-free windows are no context of the fault."""
ANCHORED = {"compromise": True, "faults": False}
"""Per kind, whether transplants are anchored on the positive's strongest evidence (:func:`context_transplants`).
Measured on ``mixed``, compromise, seeds 0-4, with :data:`QUALIFIED` and :data:`OOF_FOLDS`: without anchoring the
side effects of attacks moved alone (a SYN flood's 9 KB/s of persistent traffic) and flagged modbusBig.pcap's
12 KB/s polling connection in 4 of 5 seeds; anchored, ROC-AUC 0.9964-0.9976, TPR at 1 % FPR 0.944-0.972."""
QUALIFIED: dict[str, tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]] = {
    "compromise": ((("sensitive_out_per_min", "sensitive_out_vs_baseline"), ("short_sensitive_out_per_min",)),),
    "faults": (),
}
"""Per kind, (counts, qualifiers) column groups for unqualified negatives (:func:`context_transplants`): connections
to remote-login ports are evidence of guessing only when they are short. Without them the trees learnt an admin VM
opening five SSH sessions a minute (two to four in training) as a brute force: the top false positives of the test
period (TPR at 1 % FPR 0.908 → 0.972, seed 0)."""
OOF_FOLDS = {"compromise": 8, "faults": 4}
"""Per kind, contiguous time blocks for the boosted trees' out-of-fold threshold. With 4, a fold model trained
without a quarter of the benign behaviour put the compromise threshold on either side of a wide gap in the
benign scores by the seed (test FPR 0.0-3.2 %, seeds 0-4); with 8 and the smoothed quantile
(:func:`netsentry.models.thresholds.smoothed_threshold_for_fpr`), 0.9 % in 4 of 5 seeds and 1.6 % in the fifth."""
MODELS = ("auto", "iforest", "autoencoder", "boosted")
CONTEXT_COLUMNS = ("observed_s", "matched_packets")
"""Catalogued columns that describe a window rather than behaviour; not model inputs (``matched_packets`` counts
packets seen at several taps: zero for every single-tap capture, whatever its health)."""


@dataclass
class TrainOptions:
    """How to train: kind of verdict, detector, false-positive target, split, seed, torch device."""

    kind: str = "compromise"
    model: str = "auto"
    target_fpr: float = 0.01
    test_fraction: float = 0.4
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.model not in MODELS:
            raise ConfigError(f"--model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if not 0 < self.target_fpr < 0.5:
            raise ConfigError(f"--target-fpr must be in (0, 0.5), got {self.target_fpr}")
        if not 0 < self.test_fraction < 0.9:
            raise ConfigError(f"--test-fraction must be in (0, 0.9), got {self.test_fraction}")


@dataclass
class Evaluation:
    """Test-set metrics at the calibrated threshold, plus what the plots need."""

    metrics: dict[str, float]
    recall_by_scenario: dict[str, float]
    scores: np.ndarray
    labels: np.ndarray
    threshold: float


@dataclass
class TrainOutcome:
    """A fitted detector and how it did (``evaluation`` is None without labels)."""

    detector: Detector
    model_name: str
    features: list[str]
    n_train: int
    n_test: int
    evaluation: Evaluation | None


@dataclass
class TrainResult:
    """What a training run produced and where it is in MLflow."""

    kind: str
    model_name: str
    run_id: str
    model_uri: str
    registered_name: str
    version: str
    aliases: list[str]
    tracking_uri: str
    threshold: float
    metrics: dict[str, float] = field(default_factory=dict)
    recall_by_scenario: dict[str, float] = field(default_factory=dict)
    n_train: int = 0
    n_test: int = 0
    seconds: float = 0.0


def feature_columns(kind: str) -> list[str]:
    """Model inputs of a kind, in catalogue order."""
    if kind == "compromise":
        return list(MODEL_FEATURES)
    return [c for c in _catalogue(kind) if c not in CONTEXT_COLUMNS]


def _monotonic(kind: str) -> dict[str, int]:
    if kind == "compromise":
        return {}  # measured: constraining every input cost the transfer to real captures (2 of 4 attackers missed)
    from netsentry.pipeline.features.faults.builder import FAULT_MONOTONIC

    return FAULT_MONOTONIC


def _catalogue(kind: str) -> dict[str, str]:
    if kind == "compromise":
        return TENANT_FEATURES
    from netsentry.pipeline.features.faults.builder import FAULT_FEATURES

    return FAULT_FEATURES


def _evidence(kind: str, features: list[str]) -> list[str]:
    """Features that may stand alone as evidence in :func:`context_transplants`. Compromise: not shares of a VM's
    flows (a share of 1 is two SMB connections of an idle client as much as a brute force; measured, it flagged
    smb2.pcap). Faults: symptoms only (:data:`FAULT_MONOTONIC` +1), not traffic volumes (a quiet window alone is
    no fault; measured, it flagged bro.org and espn)."""
    if kind == "compromise":
        return [c for c in features if "_share" not in c and not c.startswith("failed_ratio")]
    return [c for c in features if _monotonic(kind).get(c, 0) > 0]


def entity_keys(df: pd.DataFrame, kind: str) -> np.ndarray:
    """Who each window is about: tenant and address of a VM (compromise), scope type and scope (faults)."""
    cols = ("tenant", "ip") if kind == "compromise" else ("scope_type", "scope")
    if not all(c in df.columns for c in cols):
        return np.arange(len(df)).astype(str)  # unknown: every row its own entity (no context negatives)
    return (df[cols[0]].astype(str) + "/" + df[cols[1]].astype(str)).to_numpy()


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
    no-history values). A short real capture has no history; without the copies a supervised model learns that an
    attack shows as a change against the VM's past and misses one that was going on when the capture began.
    Copies sit next to their originals, so time-ordered folds keep them together (no leak into calibration)."""
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
    qualified: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (),
) -> tuple[pd.DataFrame, np.ndarray] | tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Training rows plus ``copies`` transplants of each positive: a benign row of the same time block (one of
    ``blocks`` contiguous blocks) with part of the positive's *evidence* copied in — each feature beyond the benign
    rows' ``quantile`` range (among ``evidence_columns``; default all) is kept with probability ``keep`` (all of
    them when none was drawn).

    With a handful of episodes per behaviour, boosted trees otherwise explain each episode by whatever feature
    splits it off first, often incidental context (one UDP flood also looked periodic and had an inbound
    connection, the next had neither) and miss the next episode. Transplants say: the evidence, any part of it, in
    any VM's context, is the attack. Positives with no out-of-range feature get no copies. Copies follow their
    block's rows, so contiguous time folds (out-of-fold calibration) keep them with their originals.

    ``negatives`` (with ``groups``, the entity of each row): per positive, that many *context negatives* too, the
    positive with its evidence replaced by the values of a benign row of the same entity (any time), labelled 0:
    the VM's own context without the attack's evidence is benign. In ``mixed`` every admin VM was attacked in
    the training period, and without them the trees learnt that an admin VM opening a few SSH sessions is an
    attack (the top false positives of the test period).

    ``anchored``: every copy keeps the positive's *strongest* evidence (the feature furthest beyond the benign
    range, in signed-log units), and the first copy carries it alone. A side effect of an attack (the three hosts
    that answered a port-22 scan are three short SSH connections) is then never a transplant's only evidence,
    while the defining one alone is (a UDP flood to 6,746 ports at a third of the training flood's rate).

    ``qualified`` (with ``negatives``): (counts, qualifiers) column groups. When a positive's evidence has both,
    that many *unqualified negatives* too: a benign row of the same entity (its block's when the entity has none)
    carrying the positive's counts without their qualifier, labelled 0 — as many SSH connections, but sessions,
    not short guesses, are an admin's day."""
    y = np.asarray(y)
    if copies <= 0 or not (y == 0).any():
        return (X, y, np.zeros(len(y), bool)) if return_synthetic else (X, y)
    values = X.to_numpy(np.float64)
    benign = values[y == 0]
    lo, hi = np.quantile(benign, [1 - quantile, quantile], axis=0)
    if evidence_columns is not None:
        allowed = np.isin(np.asarray(X.columns, dtype=object), evidence_columns)
        lo, hi = np.where(allowed, lo, -np.inf), np.where(allowed, hi, np.inf)
    own_benign: dict[object, np.ndarray] = {}
    if negatives > 0 and groups is not None:
        rows = np.flatnonzero(y == 0)
        own_benign = {g: rows[at] for g, at in pd.Series(rows).groupby(np.asarray(groups)[rows]).indices.items()}
    rng = np.random.default_rng(seed)
    at = {c: j for j, c in enumerate(X.columns)}
    groups_of = [([at[c] for c in counts if c in at], [at[c] for c in quals if c in at]) for counts, quals in qualified]
    groups_of = [(c, q) for c, q in groups_of if c and q]
    parts, labels, made = [], [], []
    for block in np.array_split(np.arange(len(y)), max(1, blocks)):
        parts.append(values[block])
        labels.append(y[block])
        made.append(np.zeros(len(block), bool))
        pool = block[y[block] == 0]
        if not len(pool):
            continue
        for i in block[y[block] == 1]:
            evidence = (values[i] > hi) | (values[i] < lo)
            if not evidence.any():
                continue
            ctx = values[rng.choice(pool, copies)]
            take = np.tile(evidence, (copies, 1)) & (rng.random((copies, len(evidence))) < keep)
            take[~take.any(axis=1)] = evidence
            if anchored:
                strongest = int(np.argmax(np.where(evidence, _excess(values[i], lo, hi), -np.inf)))
                take[:, strongest] = True
                take[0] = False
                take[0, strongest] = True
            ctx[take] = np.broadcast_to(values[i], ctx.shape)[take]
            parts.append(ctx)
            labels.append(np.ones(copies, y.dtype))
            made.append(np.ones(copies, bool))
            own = own_benign.get(groups[i]) if own_benign else None  # this entity's benign rows
            for counts, quals in groups_of:
                if negatives > 0 and evidence[counts].any() and evidence[quals].any():
                    unqualified = values[rng.choice(pool if own is None else own, negatives)]
                    unqualified[:, counts] = values[i, counts]
                    parts.append(unqualified)
                    labels.append(np.zeros(negatives, y.dtype))
                    made.append(np.ones(negatives, bool))
            if own is not None:
                stripped = np.tile(values[i], (negatives, 1))
                donors = values[rng.choice(own, negatives)]
                stripped[:, evidence] = donors[:, evidence]
                parts.append(stripped)
                labels.append(np.zeros(negatives, y.dtype))
                made.append(np.ones(negatives, bool))
    out = pd.DataFrame(np.concatenate(parts), columns=X.columns)
    if not return_synthetic:
        return out, np.concatenate(labels)
    return out, np.concatenate(labels), np.concatenate(made)


def _excess(row: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How far each value lies beyond ``[lo, hi]``, in signed-log units (negative inside; -inf for unbounded)."""
    with np.errstate(invalid="ignore"):
        v = signed_log1p(row)
        out = np.maximum(v - signed_log1p(hi), signed_log1p(lo) - v)
    return np.nan_to_num(out, nan=-np.inf)


def time_split(starts: np.ndarray, window_ns: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) masks: test = windows starting at or after the cut; train = windows ending before it."""
    distinct = np.unique(starts)
    if len(distinct) < 3:
        raise NoUsableDataError(f"a time split needs at least 3 distinct windows, got {len(distinct)}")
    cut = distinct[min(len(distinct) - 1, int(np.floor(len(distinct) * (1 - test_fraction))))]
    return starts + window_ns <= cut, starts >= cut


def _metrics(y: np.ndarray, s: np.ndarray, thr: float, target_fpr: float) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    flag = s >= thr
    tp, fp = int(np.sum(flag & (y == 1))), int(np.sum(flag & (y == 0)))
    fn, tn = int(np.sum(~flag & (y == 1))), int(np.sum(~flag & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    out = {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "fpr": fp / (fp + tn) if fp + tn else 0.0,
        "test_positives": float(tp + fn),
        "test_negatives": float(fp + tn),
    }
    if 0 < tp + fn < len(y):
        out["roc_auc"] = float(roc_auc_score(y, s))
        out["pr_auc"] = float(average_precision_score(y, s))
        # the recall an operator gets at the target FPR when the threshold is set on these very negatives
        _, tpr = fpr_tpr_at(s, y, threshold_for_fpr(s[y == 0], target_fpr))
        out[f"tpr_at_{target_fpr:g}_fpr"] = tpr
    return out


def window_metrics(y: np.ndarray, scores: np.ndarray, threshold: float, target_fpr: float) -> dict[str, float]:
    """Scores against labels as training reports them: precision, recall, F1, FPR at the threshold; ROC-AUC,
    PR-AUC and TPR at ``target_fpr`` when both classes are present."""
    return _metrics(np.asarray(y), np.asarray(scores, np.float64), threshold, target_fpr)


def fit_and_evaluate(df: pd.DataFrame, options: TrainOptions) -> TrainOutcome:
    """Fit the chosen detector on a feature-window table; evaluate on later windows when labelled."""
    features = [c for c in feature_columns(options.kind) if c in df.columns]
    missing = sorted(set(feature_columns(options.kind)) - set(features))
    if missing:
        raise NoUsableDataError(f"feature table lacks {', '.join(missing)}; rerun `netsentry features --force`")
    if df.empty:
        raise NoUsableDataError("the feature table has no rows: no traffic in the workspace")
    df = df.sort_values("window_start_ns", kind="stable").reset_index(drop=True)
    labelled = "label" in df.columns and bool((df["label"] == 1).any()) and bool((df["label"] == 0).any())
    name = options.model if options.model != "auto" else choose_auto(labelled)
    params: dict[str, Any] = {"target_fpr": options.target_fpr, "random_state": options.seed}
    if name == "autoencoder":
        params["device"] = options.device
    if name == "boosted":
        params["monotonic"] = {k: v for k, v in _monotonic(options.kind).items() if k in features}
    detector = make_detector(name, **params)
    X = df[features].astype(np.float64)
    if not labelled:
        if detector.kind == "supervised":
            raise NoUsableDataError(f"model {name!r} needs labels with both classes: pass --labels to `features`")
        detector.fit(X)
        return TrainOutcome(detector, name, features, len(df), 0, None)
    y = df["label"].to_numpy(np.int64)
    starts = df["window_start_ns"].to_numpy(np.int64)
    window_ns = (df["window_s"].to_numpy(np.float64) * 1e9).astype(np.int64)
    train, test = time_split(starts, window_ns, options.test_fraction)
    train &= y >= 0
    test &= y >= 0
    if name == "boosted":
        # leaves of 20 windows cannot isolate a handful of labelled ones: shrink them for small label sets
        detector.set_params(
            min_samples_leaf=int(np.clip(np.sum(y[train] == 1) // 4, 2, 20)), oof_folds=OOF_FOLDS[options.kind]
        )
    if not (y[train] == 0).any():
        raise NoUsableDataError("no benign window before the time cut to train and calibrate on")
    if detector.kind == "supervised" and not (y[train] == 1).any():
        raise NoUsableDataError("no labelled positive window before the time cut; use an unsupervised --model")
    X_fit, y_fit = X[train], y[train]
    entities = entity_keys(df, options.kind)[train] if CONTEXT_NEGATIVES[options.kind] else None
    if options.kind == "compromise" and detector.kind == "supervised":
        X_fit, y_fit = without_history_copies(X_fit, y_fit)
        if entities is not None:
            entities = np.repeat(entities, 2)  # the copies sit next to their originals
    if detector.kind == "supervised":
        X_fit, y_fit, synthetic = context_transplants(
            X_fit, y_fit, keep=TRANSPLANT_KEEP[options.kind], seed=options.seed,
            evidence_columns=_evidence(options.kind, features), negatives=CONTEXT_NEGATIVES[options.kind],
            groups=entities, return_synthetic=True, anchored=ANCHORED[options.kind], qualified=QUALIFIED[options.kind],
        )  # fmt: skip
        detector.fit(X_fit, y_fit, calibration_rows=~synthetic)
    else:
        detector.fit(X_fit, y_fit)
    s = detector.score_samples(X[test])
    yt = y[test]
    thr = float(detector.threshold_)
    metrics = _metrics(yt, s, thr, options.target_fpr)
    scen = df.loc[test, "label_scenario"].astype(str).to_numpy()
    flagged = s >= thr
    by_scen = {}
    for sc in sorted(set(scen[yt == 1])):
        for part in sc.split("+"):
            m = (yt == 1) & np.array([part in x.split("+") for x in scen])
            by_scen[part] = float(flagged[m].mean())
    return TrainOutcome(
        detector, name, features, int(train.sum()), int(test.sum()), Evaluation(metrics, by_scen, s, yt, thr)
    )


def _plots(ev: Evaluation, out: Path, title: str) -> list[Path]:
    """ROC, PR and score-distribution PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    paths = []
    y, s = ev.labels, ev.scores
    if 0 < y.sum() < len(y):
        fpr, tpr, _ = roc_curve(y, s)
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(fpr, tpr, label=f"ROC-AUC {ev.metrics.get('roc_auc', float('nan')):.3f}")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title=f"ROC: {title}")
        ax.legend(loc="lower right")
        paths.append(out / "roc.png")
        fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
        plt.close(fig)
        p, r, _ = precision_recall_curve(y, s)
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(r, p, label=f"PR-AUC {ev.metrics.get('pr_auc', float('nan')):.3f}")
        ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall: {title}")
        ax.legend(loc="lower left")
        paths.append(out / "pr.png")
        fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.histogram_bin_edges(s, bins=50)
    ax.hist(s[y == 0], bins=bins, alpha=0.6, label="benign", log=True)
    if (y == 1).any():
        ax.hist(s[y == 1], bins=bins, alpha=0.6, label="labelled", log=True)
    ax.axvline(ev.threshold, color="k", ls="--", label="threshold")
    ax.set(xlabel="score (higher = more anomalous)", ylabel="windows", title=f"Scores: {title}")
    ax.legend()
    paths.append(out / "score_distribution.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)
    return paths


def _requirements(model_name: str) -> list[str]:
    import joblib
    import sklearn

    reqs = [f"scikit-learn=={sklearn.__version__}", f"pandas=={pd.__version__}", f"numpy=={np.__version__}",
            f"joblib=={joblib.__version__}"]  # fmt: skip
    if model_name == "autoencoder":
        import torch

        reqs.append(f"torch=={torch.__version__.split('+')[0]}")
    return reqs


def run_train(
    workspace: str | Path,
    options: TrainOptions,
    *,
    tracking_uri: str | None = None,
    rows: pd.DataFrame | None = None,
    tags: dict[str, str] | None = None,
    first_champion: bool = True,
) -> TrainResult:
    """Read the kind's feature table, fit and evaluate, log everything to MLflow and register the model.

    ``rows``: train on these rows of the table instead of all of it (the retraining job holds out the latest
    windows to compare the new model with the champion); ``tags``: extra tags of the MLflow run;
    ``first_champion=False``: do not make the model champion even when there is none (the job's gate does).
    """
    from netsentry.pipeline.core import tracking

    start = time.perf_counter()
    table = TENANT_WINDOWS if options.kind == "compromise" else FAULT_WINDOWS
    df, manifest = read_feature_table(workspace, table)
    if rows is not None:
        df = rows
    outcome = fit_and_evaluate(df, options)
    tracker = tracking.Tracker(workspace, tracking_uri)
    fingerprint = manifest_digest({"inputs": manifest.get("inputs"), "config": manifest.get("config"), "rows": len(df)})
    ev = outcome.evaluation
    threshold = float(outcome.detector.threshold_)
    run_tags = {"netsentry.dataset_sha256": fingerprint, **(tags or {})}
    with tracker.run(options.kind, f"train-{outcome.model_name}", run_tags) as run:
        tracking.log_params(
            {
                "kind": options.kind, "model": outcome.model_name, "model_requested": options.model,
                "target_fpr": options.target_fpr, "test_fraction": options.test_fraction, "seed": options.seed,
                "device": options.device, "split": "time" if ev else "none (unlabelled: all windows)",
                "n_features": len(outcome.features), "n_train": outcome.n_train, "n_test": outcome.n_test,
                "feature_config": json.dumps(manifest.get("config", {}), sort_keys=True),
                "threshold_method": outcome.detector.calibration_.get("method", ""),
                **{f"detector.{k}": v for k, v in outcome.detector.get_params().items()},
            }
        )  # fmt: skip
        tracking.log_metrics({"threshold": threshold, **(ev.metrics if ev else {})})
        if ev:
            tracking.log_metrics({f"recall.{k}": v for k, v in ev.recall_by_scenario.items()})
        tracking.log_dataset(
            df, name=table, source=str(Path(workspace).resolve() / "features" / table), context="training"
        )
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            catalogue = _catalogue(options.kind)
            (d / "features.json").write_text(json.dumps({c: catalogue[c] for c in outcome.features}, indent=2))
            (d / "schema.json").write_text(json.dumps({c: str(df[c].dtype) for c in df.columns}, indent=2))
            (d / "threshold.json").write_text(
                json.dumps({"threshold": threshold, **outcome.detector.calibration_}, indent=2, default=float)
            )
            (d / "config.json").write_text(json.dumps({"train": options.__dict__, "features": manifest.get("config")},
                                                      indent=2, default=str))  # fmt: skip
            if ev:
                (d / "evaluation.json").write_text(
                    json.dumps({"metrics": ev.metrics, "recall_by_scenario": ev.recall_by_scenario}, indent=2)
                )
                _plots(ev, d, f"{options.kind} ({outcome.model_name})")
            tracking.log_artifacts(d)
        example = df[outcome.features].head(5)  # the table's own dtypes: the signature inspect will meet
        model_uri = tracker.log_model(
            outcome.detector, example, _requirements(outcome.model_name),
            metadata={"kind": options.kind, "netsentry_version": __version__, "features": outcome.features},
        )  # fmt: skip
        run_id = run.info.run_id
    reg = tracker.register(options.kind, model_uri, run_id, first_champion=first_champion)
    return TrainResult(
        kind=options.kind, model_name=outcome.model_name, run_id=run_id, model_uri=model_uri,
        registered_name=reg.name, version=reg.version, aliases=reg.aliases, tracking_uri=tracker.uri,
        threshold=threshold, metrics=dict(ev.metrics) if ev else {},
        recall_by_scenario=dict(ev.recall_by_scenario) if ev else {}, n_train=outcome.n_train,
        n_test=outcome.n_test, seconds=time.perf_counter() - start,
    )  # fmt: skip
