"""MLflow: the only module that imports it. Tracking store, experiments, training runs, the model registry.

Conventions (DESIGN): experiments and registered models ``netsentry-compromise`` / ``netsentry-faults``; aliases
``champion`` (what inspect uses) and ``challenger`` (the newest trained version). Default store: SQLite in the
workspace (``sqlite:///WORKSPACE/mlflow.db``, artifacts in ``WORKSPACE/mlartifacts``); any MLflow URI works.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from netsentry import __version__
from netsentry.pipeline.core.errors import InputNotFoundError, TrackingError
from netsentry.pipeline.core.legacy import current_name, legacy_module_names

log = logging.getLogger(__name__)

TRACKING_ENV = "NETSENTRY_TRACKING_URI"
EXPERIMENTS = {
    "compromise": "netsentry-compromise",
    "faults": "netsentry-faults",
    "cicflowmeter": "netsentry-cicflowmeter",
    "inspect": "netsentry-inspections",
    "retrain": "netsentry-retrain",
}
CHAMPION, CHALLENGER = "champion", "challenger"
_RETRIES = 3


def resolve_tracking_uri(uri: str | None, workspace: str | Path) -> str:
    """``uri`` > ``$NETSENTRY_TRACKING_URI`` > SQLite in the workspace."""
    chosen = uri or os.environ.get(TRACKING_ENV)
    if chosen:
        return chosen
    return f"sqlite:///{Path(workspace).resolve() / 'mlflow.db'}"


def _local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def _mlflow() -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    # an unreachable server should fail in seconds, not after MLflow's default minutes of back-off
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # our commands print what matters
    os.environ.setdefault("MLFLOW_PRINT_MODEL_URLS_ON_CREATION", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.ERROR)  # its warnings are about its own defaults, not our data
    # and so are its UserWarnings (integer columns cannot hold NaN: our tables never do; dataset source guesses)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow(\.|$)")
    return mlflow


def git_revision() -> str:
    """The source tree's git commit (``unknown`` outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def scaled_threshold(detector: Any, scale: float) -> float:
    """The detector's threshold for ``threshold_scale``: 1 keeps it; 2 moves it to where half as many benign
    validation windows pass (``target_fpr / scale``, from the benign score quantiles the detector keeps), never
    below the calibrated one; 0.5 to where twice as many pass, never above it. Scores' units differ per detector
    (log-odds can be negative), so the scale acts on the false-positive rate, not on the score. Detectors without
    quantiles: the threshold times the scale (divided by it when negative)."""
    base = float(detector.threshold_)
    if scale == 1.0:
        return base
    q = getattr(detector, "benign_quantiles_", None)
    if q is None:
        return base * scale if base >= 0 else base / scale
    fpr = min(0.5, float(detector.target_fpr) / scale)
    at = float(np.quantile(q, 1.0 - fpr))
    return max(base, at) if scale > 1 else min(base, at)


def _pyfunc_class() -> type:
    mlflow = _mlflow()

    class NetsentryDetector(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined, misc]
        """Scores feature rows: ``score`` (higher = more anomalous), ``flag`` (score >= threshold), ``threshold``
        and ``benign_tail`` (share of benign validation windows scoring at least as high)."""

        def load_context(self, context: Any) -> None:
            self.detector = joblib.load(context.artifacts["detector"])

        def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
            scale = float((params or {}).get("threshold_scale", 1.0))
            names = list(self.detector.feature_names_in_)
            score = self.detector.score_samples(model_input[names])
            thr = scaled_threshold(self.detector, scale)
            tail = self.detector.benign_tail(score) if hasattr(self.detector, "benign_tail") else np.nan
            return pd.DataFrame(
                {"score": score, "flag": (score >= thr).astype(np.int64), "threshold": thr, "benign_tail": tail}
            )

    return NetsentryDetector


@dataclass
class ModelRef:
    """A model URI resolved against the registry: the version and training run behind it (when registered)."""

    uri: str
    name: str = ""
    version: str = ""
    run_id: str = ""
    experiment_id: str = ""


PREVIOUS_CHAMPION_TAG = "netsentry.previous_champion"
PROMOTION_TAGS = ("netsentry.promoted_at", "netsentry.promotion_reason")


@dataclass
class VersionInfo:
    """One registered version: aliases, training run, its metrics and promotion record."""

    version: str
    run_id: str
    aliases: list[str]
    created_ms: int
    metrics: dict[str, float] = field(default_factory=dict)
    model: str = ""
    previous_champion: str | None = None
    promoted_at: str | None = None
    promotion_reason: str | None = None


@dataclass
class Promotion:
    """A move of the ``champion`` alias."""

    kind: str
    version: str
    previous: str | None
    reason: str


@dataclass
class RegisteredVersion:
    """A registered model version and the aliases it holds after registration."""

    name: str
    version: str
    run_id: str
    model_uri: str
    aliases: list[str]


class Tracker:
    """One tracking store: experiments with explicit artifact locations, runs, registry."""

    def __init__(self, workspace: str | Path, uri: str | None = None) -> None:
        self.workspace = Path(workspace)
        self.uri = resolve_tracking_uri(uri, workspace)
        self.mlflow = _mlflow()
        if self.uri.startswith("sqlite:"):
            self.workspace.mkdir(parents=True, exist_ok=True)
        self.mlflow.set_tracking_uri(self.uri)
        self.mlflow.set_registry_uri(self.uri)
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(self.uri, self.uri)

    def _retry(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException

        delay = 0.5
        for attempt in range(_RETRIES):
            try:
                return fn(*args, **kwargs)
            except MlflowException as e:
                if attempt == _RETRIES - 1 or getattr(e, "error_code", "") in (
                    "RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS"
                ):  # fmt: skip
                    raise TrackingError(f"MLflow {what} failed at {self.uri}: {str(e).splitlines()[0]}") from None
            except OSError as e:
                if attempt == _RETRIES - 1:
                    raise TrackingError(f"MLflow {what} failed at {self.uri}: {e}") from None
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def experiment_id(self, kind: str) -> str:
        """Get or create the experiment of a kind (artifact location in the workspace for local stores)."""
        name = EXPERIMENTS[kind]
        exp = self._retry("experiment lookup", self.client.get_experiment_by_name, name)
        if exp is not None:
            return str(exp.experiment_id)
        location = None
        if _local_store(self.uri):
            location = (self.workspace.resolve() / "mlartifacts" / name).as_uri()
        return str(self._retry("experiment creation", self.client.create_experiment, name, artifact_location=location))

    @contextmanager
    def run(self, kind: str, run_name: str, tags: Mapping[str, str] | None = None) -> Iterator[Any]:
        """An active MLflow run in the kind's experiment, tagged with version and git revision."""
        exp = self.experiment_id(kind)
        base = {"netsentry.version": __version__, "netsentry.git_revision": git_revision(), "netsentry.kind": kind}
        try:
            active = self.mlflow.start_run(experiment_id=exp, run_name=run_name, tags={**base, **(tags or {})})
        except Exception as e:
            raise TrackingError(f"cannot start an MLflow run at {self.uri}: {str(e).splitlines()[0]}") from None
        with active as r:
            yield r

    def log_model(
        self,
        detector: Any,
        input_example: pd.DataFrame,
        pip_requirements: list[str],
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Log the detector as a pyfunc (signature + input example) in the active run; returns its model URI."""
        from mlflow.models import infer_signature

        n = len(input_example)
        out_example = pd.DataFrame(
            {"score": np.zeros(n), "flag": np.zeros(n, np.int64), "threshold": 0.0, "benign_tail": np.ones(n)}
        )
        with tempfile.TemporaryDirectory() as tmp:
            signature = infer_signature(input_example, out_example, params={"threshold_scale": 1.0})
            path = Path(tmp) / "detector.joblib"
            joblib.dump(detector, path)
            info = self.mlflow.pyfunc.log_model(
                name="model",
                python_model=_pyfunc_class()(),
                artifacts={"detector": str(path)},
                signature=signature,
                input_example=input_example,
                pip_requirements=pip_requirements,
                metadata=metadata,
            )
        return str(info.model_uri)

    def register(self, kind: str, model_uri: str, run_id: str, *, first_champion: bool = True) -> RegisteredVersion:
        """New version of the kind's registered model; alias ``challenger``, and ``champion`` when none exists
        (unless ``first_champion`` is False: the retraining job's gate decides that)."""
        name = EXPERIMENTS[kind]
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self._retry("model registration", self.client.create_registered_model, name)
        # MLflow 3 logs models as their own entities (models:/m-…); a server needs their id to accept the source
        model_id = model_uri.rsplit("/", 1)[-1] if model_uri.startswith("models:/m-") else None
        mv = self._retry("model version creation", self.client.create_model_version, name, model_uri, run_id=run_id,
                         model_id=model_id)  # fmt: skip
        version = str(mv.version)
        self._retry("alias update", self.client.set_registered_model_alias, name, CHALLENGER, version)
        aliases = [CHALLENGER]
        if first_champion and self.alias_version(kind, CHAMPION) is None:
            self._retry("alias update", self.client.set_registered_model_alias, name, CHAMPION, version)
            aliases.append(CHAMPION)
        return RegisteredVersion(name, version, run_id, model_uri, aliases)

    def alias_version(self, kind: str, alias: str) -> str | None:
        """The version an alias points at, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(EXPERIMENTS[kind], alias).version)
        except MlflowException:
            return None

    def versions(self, kind: str) -> list[VersionInfo]:
        """Every version of the kind's registered model, newest first, with its training run's metrics."""
        name = EXPERIMENTS[kind]
        found = self._retry("model version search", self.client.search_model_versions, f"name='{name}'")
        aliases: dict[str, list[str]] = {}
        if found:  # version search leaves aliases out: the registered model has them
            for alias, v in (self._retry("model lookup", self.client.get_registered_model, name).aliases or {}).items():
                aliases.setdefault(str(v), []).append(alias)
        out = []
        for mv in sorted(found, key=lambda m: int(m.version), reverse=True):
            metrics: dict[str, float] = {}
            model = ""
            if mv.run_id:
                try:
                    run = self.client.get_run(mv.run_id)
                    metrics, model = dict(run.data.metrics), run.data.params.get("model", "")
                except Exception:  # a deleted run: the version is still listed
                    pass
            tags = dict(mv.tags or {})
            out.append(VersionInfo(
                str(mv.version), mv.run_id or "", sorted(aliases.get(str(mv.version), [])),
                int(mv.creation_timestamp or 0),
                metrics, model, tags.get(PREVIOUS_CHAMPION_TAG), tags.get(PROMOTION_TAGS[0]),
                tags.get(PROMOTION_TAGS[1]),
            ))  # fmt: skip
        return out

    def promote(self, kind: str, version: str, reason: str) -> Promotion:
        """Point ``champion`` at ``version``, recording the champion it replaces on that version (for rollback).

        The record is written before the alias moves: a job killed in between leaves the old champion in place.
        """
        name = EXPERIMENTS[kind]
        if version not in {v.version for v in self.versions(kind)}:
            raise InputNotFoundError(f"{name} has no version {version}", path=self.uri)
        previous = self.alias_version(kind, CHAMPION)
        if previous == version:
            return Promotion(kind, version, previous, "already the champion")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for key, value in ((PREVIOUS_CHAMPION_TAG, previous or ""), (PROMOTION_TAGS[0], stamp),
                           (PROMOTION_TAGS[1], reason[:5000])):  # fmt: skip
            self._retry("version tag", self.client.set_model_version_tag, name, version, key, value)
        self._retry("alias update", self.client.set_registered_model_alias, name, CHAMPION, version)
        return Promotion(kind, version, previous, reason)

    def rollback(self, kind: str) -> Promotion:
        """Move ``champion`` back to the version it replaced (recorded at its promotion)."""
        name = EXPERIMENTS[kind]
        current = self.alias_version(kind, CHAMPION)
        if current is None:
            raise InputNotFoundError(f"{name} has no champion to roll back", path=self.uri)
        mv = self._retry("model version lookup", self.client.get_model_version, name, current)
        previous = dict(mv.tags or {}).get(PREVIOUS_CHAMPION_TAG)
        if not previous:
            raise InputNotFoundError(
                f"{name} v{current} has no recorded previous champion (it was the first); nothing to roll back to",
                path=self.uri,
            )
        self._retry("alias update", self.client.set_registered_model_alias, name, CHAMPION, previous)
        return Promotion(kind, previous, current, f"rollback from v{current}")

    def resolve_model(self, uri: str) -> ModelRef:
        """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` → its version, run and experiment; other URIs as is."""
        from mlflow.exceptions import MlflowException

        ref = ModelRef(uri)
        if not uri.startswith("models:/"):
            return ref
        body = uri[len("models:/") :]
        try:
            if "@" in body:
                name, alias = body.split("@", 1)
                mv = self.client.get_model_version_by_alias(name, alias)
            else:
                name, version = body.rsplit("/", 1)
                mv = self.client.get_model_version(name, version)
        except MlflowException as e:
            raise TrackingError(f"no model {uri} in {self.uri}: {str(e).splitlines()[0]}") from None
        except ValueError:
            raise TrackingError(f"model URI {uri!r} is not models:/NAME@ALIAS or models:/NAME/VERSION") from None
        ref.name, ref.version, ref.run_id = mv.name, str(mv.version), mv.run_id or ""
        if ref.run_id:
            with contextlib.suppress(MlflowException):
                ref.experiment_id = str(self.client.get_run(ref.run_id).info.experiment_id)
        return ref

    def load_model(self, uri: str) -> Any:
        """A pyfunc model by URI (``models:/netsentry-compromise@champion``, ``runs:/…``)."""
        try:
            try:
                return self.mlflow.pyfunc.load_model(uri)
            except ModuleNotFoundError as e:
                if current_name(e.name or "") is None:
                    raise
                with legacy_module_names():  # registered before the netsentry package: old module names
                    return self.mlflow.pyfunc.load_model(uri)
        except Exception as e:
            raise TrackingError(f"cannot load model {uri} from {self.uri}: {str(e).splitlines()[0]}") from None


def log_params(params: Mapping[str, Any]) -> None:
    """Parameters of the active run (values rendered as text, long ones cut to MLflow's limit)."""
    mlflow = _mlflow()
    mlflow.log_params({k: (str(v)[:6000]) for k, v in params.items()})


def log_metrics(metrics: Mapping[str, float]) -> None:
    """Finite metrics of the active run."""
    mlflow = _mlflow()
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})


def log_artifacts(directory: str | Path, artifact_path: str | None = None) -> None:
    """Every file of a directory as artifacts of the active run."""
    _mlflow().log_artifacts(str(directory), artifact_path=artifact_path)


def log_dataset(df: pd.DataFrame, name: str, source: str, context: str) -> str:
    """Register a feature table as the run's input dataset; returns MLflow's digest of it."""
    mlflow = _mlflow()
    ds = mlflow.data.from_pandas(df, source=source, name=name)
    mlflow.log_input(ds, context=context)
    return str(ds.digest)


def set_tags(tags: Mapping[str, str]) -> None:
    """Tags of the active run."""
    _mlflow().set_tags(dict(tags))
