"""``netsentry train``: read a workspace's feature windows, fit and evaluate a detector, log and register it in MLflow.

The fitting and evaluation are :func:`netsentry.pipeline.train.evaluate.fit_and_evaluate` (no I/O); this module reads
the workspace and talks to MLflow through :mod:`netsentry.pipeline.core.tracking`.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from netsentry import __version__
from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.io import manifest_digest
from netsentry.pipeline.features.stage import read_feature_table
from netsentry.pipeline.train.evaluate import fit_and_evaluate, plot_evaluation
from netsentry.pipeline.train.inputs import catalogue
from netsentry.pipeline.train.options import TrainOptions


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
    table = catalog.FEATURE_TABLES[options.kind]
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
            df, name=table.name, source=str(catalog.path(Path(workspace).resolve(), table)), context="training"
        )
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            described = catalogue(options.kind)
            (d / "features.json").write_text(json.dumps({c: described[c] for c in outcome.features}, indent=2))
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
                plot_evaluation(ev, d, f"{options.kind} ({outcome.model_name})")
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
