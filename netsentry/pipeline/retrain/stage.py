"""``netsentry retrain``: the scheduled job. New captures in → challengers trained → promoted only through a gate.

One run: take the lock; find the captures that arrived in the spool since the watermark; run capture → flows →
features on them (a batch workspace named after them, so a rerun after a crash picks up where it stopped); per
kind, hold out the latest windows, train a challenger on the earlier ones, and score challenger and champion on
the *same* held-out windows (metrics against labels where there are labels, else benign false-positive rate and
recall of the planted cases the config names). A challenger becomes champion only when it passes the absolute
floors and beats the champion by the margin. Every decision is logged to MLflow (``netsentry-retrain``) before
any alias moves; the watermark advances last. Any failure before that leaves champions and watermark as they were.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.config import GateFloors, PlantedCase, Settings
from netsentry.pipeline.core.errors import InputNotFoundError, NoUsableDataError
from netsentry.pipeline.core.io import atomic_write_text, file_fingerprint
from netsentry.pipeline.core.locking import exclusive_lock

log = logging.getLogger(__name__)

RETRAIN_DIR = "retrain"
STATE_FILE = "state.json"
LOCK_FILE = "retrain.lock"
BATCHES_DIR = "batches"
LABEL_FILES = ("labels.csv", "*.labels.csv")
TENANT_FILE = "tenants.yaml"


@dataclass
class Watermark:
    """The newest capture already used (mtime) and the names that share that mtime."""

    mtime_ns: int = 0
    names: list[str] = field(default_factory=list)
    batches: int = 0
    updated: str = ""

    def admits(self, path: Path) -> bool:
        """Whether ``path`` arrived after the watermark."""
        m = path.stat().st_mtime_ns
        return m > self.mtime_ns or (m == self.mtime_ns and str(path) not in self.names)


@dataclass
class KindDecision:
    """The gate's verdict for one kind."""

    kind: str
    promote: bool
    reason: str
    challenger: str
    champion_before: str | None
    champion_after: str | None = None
    mode: str = ""
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class RetrainResult:
    """What one run of the job did."""

    status: str  # "no new data" | "done"
    files: list[Path] = field(default_factory=list)
    batch: Path | None = None
    decisions: list[KindDecision] = field(default_factory=list)
    run_id: str | None = None
    watermark: Watermark = field(default_factory=Watermark)
    seconds: float = 0.0


def read_watermark(workspace: Path) -> Watermark:
    """The job's watermark (none yet: everything in the spool is new)."""
    p = workspace / RETRAIN_DIR / STATE_FILE
    if not p.is_file():
        return Watermark()
    return Watermark(**json.loads(p.read_text()))


def new_captures(spool: Path, patterns: list[str], mark: Watermark) -> list[Path]:
    """Captures under ``spool`` (recursively) that arrived after the watermark, oldest first.

    Captures must appear in the spool whole (moved or renamed in, as dumpcap's ring files are closed): a file
    still being copied would be read half-written.
    """
    if not spool.is_dir():
        raise InputNotFoundError("spool directory not found (retrain.spool)", path=str(spool))
    files = {p for pat in patterns for p in spool.rglob(pat) if p.is_file()}
    return sorted((p for p in files if mark.admits(p)), key=lambda p: (p.stat().st_mtime_ns, str(p)))


def _advance(mark: Watermark, files: list[Path]) -> Watermark:
    newest = max(p.stat().st_mtime_ns for p in files)
    names = [str(p) for p in files if p.stat().st_mtime_ns == newest]
    if newest == mark.mtime_ns:
        names = sorted(set(mark.names) | set(names))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return Watermark(max(newest, mark.mtime_ns), names, mark.batches + 1, stamp)


def _side_files(files: list[Path], patterns: tuple[str, ...]) -> list[Path]:
    dirs = sorted({p.parent for p in files})
    return sorted({q for d in dirs for pat in patterns for q in d.glob(pat) if q.is_file()})


def _batch_labels(files: list[Path], batch: Path) -> Path | None:
    """The label files beside the new captures, concatenated into the batch (None when there are none)."""
    found = _side_files(files, LABEL_FILES)
    if not found:
        return None
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in found]
    out = batch / "labels.csv"
    atomic_write_text(out, pd.concat(frames, ignore_index=True).drop_duplicates().to_csv(index=False))
    return out


# ---------------------------------------------------------------------------- evaluation


def _planted_mask(df: pd.DataFrame, cases: list[PlantedCase], kind: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """Windows overlapping any planted case of ``kind``, and per case its windows."""
    start = df["window_start_ns"].to_numpy(np.int64)
    end = start + (df["window_s"].to_numpy(np.float64) * 1e9).astype(np.int64)
    who = [df[c].astype(str).to_numpy() for c in ("scope", "vm", "ip") if c in df.columns]
    per_case = []
    for case in (c for c in cases if c.kind == kind):
        s, e = pd.Timestamp(case.start).value, pd.Timestamp(case.end).value
        hit = np.zeros(len(df), bool)
        for col in who:
            hit |= col == case.scope
        per_case.append(hit & (start < e) & (end > s))
    any_case = np.any(per_case, axis=0) if per_case else np.zeros(len(df), bool)
    return any_case, per_case


def evaluate(model: Any, hold: pd.DataFrame, kind: str, planted: list[PlantedCase], target_fpr: float) -> dict:
    """One model on the held-out windows: labelled metrics when both classes are there, else benign FPR and the
    recall of planted cases (a case counts as found when any of its windows is flagged)."""
    from netsentry.pipeline.train.evaluate import window_metrics

    pred = model.predict(hold)
    score = pred["score"].to_numpy(np.float64)
    flag = pred["flag"].to_numpy(np.int64) == 1
    thr = float(pred["threshold"].iloc[0])
    y = hold["label"].to_numpy(np.int64) if "label" in hold.columns else None
    if y is not None and (y == 1).any() and (y == 0).any():
        keep = y >= 0
        m = window_metrics(y[keep], score[keep], thr, target_fpr)
        m["tpr_at_fpr"] = m.get(f"tpr_at_{target_fpr:g}_fpr", float("nan"))
        return {"mode": "labelled", **m}
    planted_rows, cases = _planted_mask(hold, planted, kind)
    benign = ~planted_rows
    out: dict[str, Any] = {"mode": "unlabelled", "fpr": float(flag[benign].mean()) if benign.any() else 0.0,
                           "benign_windows": float(benign.sum())}  # fmt: skip
    if cases:
        out["planted_recall"] = float(np.mean([bool(flag[c].any()) for c in cases]))
        out["planted_cases"] = float(len(cases))
    out["score"] = out.get("planted_recall", 0.0) - out["fpr"]
    return out


def gate(
    kind: str, challenger: dict, champion: dict | None, floors: GateFloors, metric: str, margin: float
) -> tuple[bool, str]:
    """Promote? The challenger must pass the absolute floors, then beat the champion by more than ``margin``."""
    fails = []
    if challenger["mode"] == "labelled":
        auc = challenger.get("roc_auc", float("nan"))
        if not auc >= floors.min_roc_auc:
            fails.append(f"ROC-AUC {auc:.4f} < floor {floors.min_roc_auc}")
    elif "planted_recall" in challenger and challenger["planted_recall"] < floors.min_planted_recall:
        fails.append(f"planted-case recall {challenger['planted_recall']:.2f} < floor {floors.min_planted_recall}")
    if challenger["fpr"] > floors.max_fpr:
        fails.append(f"FPR {challenger['fpr']:.4f} > ceiling {floors.max_fpr}")
    if fails:
        return False, "challenger below the floors: " + "; ".join(fails)
    if champion is None:
        return True, "no usable champion; the challenger passes the floors"
    key = metric if challenger["mode"] == "labelled" else "score"
    what = metric if key == metric else "planted recall - FPR"
    a, b = float(challenger.get(key, float("nan"))), float(champion.get(key, float("nan")))
    if not np.isfinite(b):
        return True, f"the champion has no {what} on these windows; the challenger passes the floors"
    if a > b + margin:
        return True, f"challenger {what} {a:.4f} beats champion {b:.4f} by more than {margin}"
    return False, f"challenger {what} {a:.4f} does not beat champion {b:.4f} by more than {margin}"


# ---------------------------------------------------------------------------- the job


def run_retrain(settings: Settings, *, on_step: Callable[[str], None] | None = None) -> RetrainResult:
    """One run of the retraining job (see the module docstring)."""
    ws = Path(settings.workspace)
    say = on_step or (lambda _s: None)
    started = time.perf_counter()
    with exclusive_lock(ws / RETRAIN_DIR / LOCK_FILE, "retraining job"):
        mark = read_watermark(ws)
        files = new_captures(Path(settings.retrain.spool), settings.retrain.patterns, mark)
        if not files:
            return RetrainResult("no new data", watermark=mark, seconds=time.perf_counter() - started)
        batch = _prepare_batch(settings, files, say)
        from netsentry.pipeline.core.tracking import Tracker

        tracker = Tracker(ws, settings.train.tracking_uri)
        for kind in settings.retrain.kinds:  # experiments (and their artifact stores) belong to the job, not a batch
            tracker.experiment_id(kind)
        decisions = [_challenge(settings, tracker, batch, kind, say) for kind in settings.retrain.kinds]
        say("logging the decision")
        run_id = _log_decision(tracker, settings, batch, files, decisions)
        for d in decisions:
            _apply(tracker, d, run_id)
        tracker.client.set_tag(run_id, "netsentry.applied", "true")
        new_mark = _advance(mark, files)
        atomic_write_text(ws / RETRAIN_DIR / STATE_FILE, json.dumps(asdict(new_mark), indent=2) + "\n")
        return RetrainResult("done", files, batch, decisions, run_id, new_mark, time.perf_counter() - started)


def _prepare_batch(settings: Settings, files: list[Path], say: Callable[[str], None]) -> Path:
    """capture → flows → features of the new captures in a batch workspace named after them."""
    from netsentry.pipeline.capture.stage import run_capture
    from netsentry.pipeline.core.stage_options import capture_options, flow_config, window_spec
    from netsentry.pipeline.features.stage import run_features
    from netsentry.pipeline.flows.stage import run_flows

    digest = hashlib.sha256(json.dumps([file_fingerprint(p) for p in files], sort_keys=True).encode()).hexdigest()[:12]
    batch = Path(settings.workspace) / RETRAIN_DIR / BATCHES_DIR / digest
    batch.mkdir(parents=True, exist_ok=True)
    beside = next(iter(_side_files(files, (TENANT_FILE,))), None)  # used when the config names no tenant map
    say(f"capture ({len(files)} new files)")
    run_capture(list(files), batch, capture_options(settings, tenants=beside))
    say("flows")
    run_flows(batch, flow_config(settings), batch_packets=settings.flows.batch_packets)
    say("features")
    run_features(batch, labels=_batch_labels(files, batch), spec=window_spec(settings),
                 fault_window_s=settings.features.fault_window_s)  # fmt: skip
    return batch


def _challenge(settings: Settings, tracker: Any, batch: Path, kind: str, say: Callable[[str], None]) -> KindDecision:
    """Train a challenger on the batch's earlier windows; score it and the champion on the latest ones."""
    from netsentry.pipeline.core.stage_options import train_options
    from netsentry.pipeline.core.tracking import CHAMPION, EXPERIMENTS
    from netsentry.pipeline.features.stage import read_feature_table
    from netsentry.pipeline.train.evaluate import time_split

    rs, ts = settings.retrain, settings.train
    df, _ = read_feature_table(batch, catalog.FEATURE_TABLES[kind])
    if df.empty:
        raise NoUsableDataError(f"no {kind} feature windows in the new captures", path=str(batch))
    df = df.sort_values("window_start_ns", kind="stable").reset_index(drop=True)
    starts = df["window_start_ns"].to_numpy(np.int64)
    train, hold = time_split(starts, (df["window_s"].to_numpy(np.float64) * 1e9).astype(np.int64),
                             rs.holdout_fraction)  # fmt: skip
    champion = tracker.alias_version(kind, CHAMPION)
    say(f"train {kind} challenger")
    options = train_options(settings, kind)
    try:
        res = _train_challenger(batch, options, ts.tracking_uri, df[train].reset_index(drop=True))
    except NoUsableDataError as e:
        raise NoUsableDataError(f"{kind} challenger: {e}", path=str(batch)) from None
    held = df[hold].reset_index(drop=True)
    say(f"evaluate {kind}: challenger v{res.version} and champion v{champion}")
    name = EXPERIMENTS[kind]
    ch = evaluate(tracker.load_model(f"models:/{name}/{res.version}"), held, kind, rs.planted, ts.target_fpr)
    metrics = {"challenger": ch}
    champ = None
    if champion is not None:
        try:
            champ = evaluate(tracker.load_model(f"models:/{name}/{champion}"), held, kind, rs.planted,
                             ts.target_fpr)  # fmt: skip
            metrics["champion"] = champ
        except Exception as e:  # a champion that cannot score today's features is no champion to keep
            from netsentry.pipeline.core.errors import TrackingError

            if isinstance(e, TrackingError):
                raise
            log.warning("champion v%s cannot score the held-out windows: %s", champion, str(e).splitlines()[0])
    promote, reason = gate(kind, ch, champ, rs.floors[kind], rs.metric, rs.margin)
    return KindDecision(kind, promote, reason, res.version, champion, mode=ch["mode"], metrics=metrics)


def _train_challenger(batch: Path, options: Any, tracking_uri: str | None, rows: pd.DataFrame) -> Any:
    """A new registered version (alias ``challenger`` only) trained on ``rows`` of the batch."""
    from netsentry.pipeline.train.stage import run_train

    return run_train(batch, options, tracking_uri=tracking_uri, rows=rows,
                     tags={"netsentry.retrain_batch": batch.name}, first_champion=False)  # fmt: skip


def _log_decision(tracker: Any, settings: Settings, batch: Path, files: list[Path], ds: list[KindDecision]) -> str:
    """A run in ``netsentry-retrain``: the batch, the gate, both models' metrics and the decision per kind."""
    import tempfile

    from netsentry.pipeline.core import tracking

    rs = settings.retrain
    with tracker.run("retrain", f"retrain {batch.name}", {"netsentry.applied": "false"}) as run:
        tracking.log_params({"batch": batch.name, "files": len(files), "spool": str(rs.spool), "metric": rs.metric,
                             "margin": rs.margin, "holdout_fraction": rs.holdout_fraction,
                             **{f"floors.{k}": json.dumps(v.model_dump()) for k, v in rs.floors.items()}})  # fmt: skip
        metrics: dict[str, float] = {}
        tags: dict[str, str] = {}
        for d in ds:
            for who, m in d.metrics.items():
                metrics.update({f"{d.kind}.{who}.{k}": v for k, v in m.items() if isinstance(v, int | float)})
            tags.update(
                {
                    f"{d.kind}.decision": "promote" if d.promote else "keep",
                    f"{d.kind}.reason": d.reason,
                    f"{d.kind}.challenger": d.challenger,
                    f"{d.kind}.champion_before": d.champion_before or "",
                }
            )
        tracking.log_metrics(metrics)
        tracking.set_tags(tags)
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "decision.json"
            p.write_text(json.dumps({"batch": batch.name, "files": [str(f) for f in files],
                                     "decisions": [asdict(d) for d in ds]}, indent=2, default=str))  # fmt: skip
            tracking.log_artifacts(tmp)
        return str(run.info.run_id)


def _apply(tracker: Any, d: KindDecision, run_id: str) -> None:
    """Move ``champion`` when the gate said so."""
    if d.promote:
        tracker.promote(d.kind, d.challenger, f"retrain run {run_id}: {d.reason}")
        d.champion_after = d.challenger
    else:
        d.champion_after = d.champion_before
