"""Fit a detector on a feature-window table and evaluate it on later windows; no I/O.

With labels the split is by time: windows that start in the last ``test_fraction`` of the time span are the test
set; training windows that reach into it are dropped (sliding windows overlap, they would leak). Ambiguous
windows (label -1) are in neither. Without labels every window trains an unsupervised detector, whose threshold
is calibrated on the latest windows (assumed benign).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from netsentry.models.base import Detector
from netsentry.models.registry import choose_auto, make_detector
from netsentry.models.thresholds import fpr_tpr_at, threshold_for_fpr
from netsentry.pipeline.core.errors import NoUsableDataError
from netsentry.pipeline.train.inputs import entity_keys, evidence_columns, feature_columns, monotonic_constraints
from netsentry.pipeline.train.options import (
    ANCHORED,
    CONTEXT_NEGATIVES,
    OOF_FOLDS,
    QUALIFIED,
    TRANSPLANT_KEEP,
    TrainOptions,
)
from netsentry.pipeline.train.transplants import context_transplants, without_history_copies


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


def recall_by_scenario(scenarios: np.ndarray, y: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Share of each labelled scenario's positive windows flagged (a window of ``a+b`` counts for both)."""
    by_scen = {}
    for sc in sorted(set(scenarios[y == 1])):
        for part in sc.split("+"):
            m = (y == 1) & np.array([part in x.split("+") for x in scenarios])
            by_scen[part] = float(flagged[m].mean())
    return by_scen


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
    detector = _make(name, features, options)
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
    _fit_labelled(detector, name, df, X, y, train, options)
    s = detector.score_samples(X[test])
    yt = y[test]
    thr = float(detector.threshold_)
    metrics = _metrics(yt, s, thr, options.target_fpr)
    by_scen = recall_by_scenario(df.loc[test, "label_scenario"].astype(str).to_numpy(), yt, s >= thr)
    return TrainOutcome(
        detector, name, features, int(train.sum()), int(test.sum()), Evaluation(metrics, by_scen, s, yt, thr)
    )


def _make(name: str, features: list[str], options: TrainOptions) -> Detector:
    """The named detector with the run's target FPR, seed, device and (boosted) the kind's monotonic constraints."""
    params: dict[str, Any] = {"target_fpr": options.target_fpr, "random_state": options.seed}
    if name == "autoencoder":
        params["device"] = options.device
    if name == "boosted":
        params["monotonic"] = {k: v for k, v in monotonic_constraints(options.kind).items() if k in features}
    return make_detector(name, **params)


def _fit_labelled(
    detector: Detector,
    name: str,
    df: pd.DataFrame,
    X: pd.DataFrame,
    y: np.ndarray,
    train: np.ndarray,
    options: TrainOptions,
) -> None:
    """Fit on the training windows; supervised detectors also on history-free copies and context transplants."""
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
            evidence_columns=evidence_columns(options.kind, list(X.columns)),
            negatives=CONTEXT_NEGATIVES[options.kind], groups=entities, return_synthetic=True,
            anchored=ANCHORED[options.kind], qualified=QUALIFIED[options.kind],
        )  # fmt: skip
        detector.fit(X_fit, y_fit, calibration_rows=~synthetic)
    else:
        detector.fit(X_fit, y_fit)


def plot_evaluation(ev: Evaluation, out: Path, title: str) -> list[Path]:
    """ROC, PR and score-distribution PNGs in ``out``."""
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
