"""Layered configuration: ``configs/default.yaml`` → user file → CLI flags, resolved once by pydantic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from netsentry.pipeline.core.errors import ConfigError, InputNotFoundError
from netsentry.pipeline.core.units import parse_duration_s

DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "default.yaml"


def _duration_s(value: Any) -> Any:
    """A duration as text ('60s', '1m', '500ms') in seconds, parsed as the command-line flags parse it."""
    if not isinstance(value, str):
        return value
    try:
        return parse_duration_s(value)
    except ConfigError as e:
        raise PydanticCustomError("duration", "{reason}", {"reason": str(e)}) from None


Seconds = Annotated[float, BeforeValidator(_duration_s)]
"""A duration setting in seconds: a number, or text with a unit as the duration flags take."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaptureSettings(_Section):
    engine: Literal["fast", "pyshark"] = "fast"
    chunk_mb: int = Field(32, ge=1, le=4096)
    tenants: Path | None = None


class FlowSettings(_Section):
    idle_timeout_s: Seconds = Field(120.0, gt=0)
    active_timeout_s: Seconds = Field(1800.0, gt=0)
    batch_packets: int = Field(131_072, ge=1000)


class FeatureSettings(_Section):
    window_s: Seconds = Field(60.0, gt=0)
    hop_s: Seconds = Field(10.0, gt=0)
    fault_window_s: Seconds = Field(1.0, gt=0)
    labels: Path | None = None


class TrainSettings(_Section):
    model: Literal["auto", "iforest", "autoencoder", "boosted"] = "auto"
    target_fpr: float = Field(0.01, gt=0, lt=0.5)
    test_fraction: float = Field(0.4, gt=0, lt=0.9)
    seed: int = 0
    device: str = "cpu"
    tracking_uri: str | None = None


class InspectSettings(_Section):
    compromise_model: str | None = None
    fault_model: str | None = None
    threshold_scale: float = Field(1.0, gt=0)
    pseudonymize: bool = False
    pseudonym_key_file: Path | None = None
    ui_url: str | None = None
    fail_on: Literal["high", "medium", "low"] = "medium"


class RunSettings(_Section):
    inputs: list[str] = Field(default_factory=list)
    train: Literal["auto", "always", "never"] = "auto"
    promote: Literal["first", "always"] = "first"
    kinds: list[Literal["compromise", "faults"]] = Field(default_factory=lambda: ["compromise", "faults"])
    inspect: bool = True


class GateFloors(_Section):
    min_roc_auc: float = Field(0.8, ge=0, le=1)
    max_fpr: float = Field(0.05, ge=0, le=1)
    min_planted_recall: float = Field(1.0, ge=0, le=1)


class PlantedCase(_Section):
    kind: Literal["compromise", "faults"]
    scope: str = Field(min_length=1)
    start: str
    end: str


class RetrainSettings(_Section):
    spool: Path = Path("spool")
    patterns: list[str] = Field(default_factory=lambda: ["*.pcap", "*.pcapng", "*.pcap.gz", "*.pcapng.gz"])
    kinds: list[Literal["compromise", "faults"]] = Field(default_factory=lambda: ["compromise", "faults"])
    holdout_fraction: float = Field(0.3, gt=0, lt=0.9)
    metric: Literal["roc_auc", "pr_auc", "tpr_at_fpr", "recall", "f1"] = "roc_auc"
    margin: float = Field(0.0, ge=0)
    floors: dict[Literal["compromise", "faults"], GateFloors] = Field(
        default_factory=lambda: {"compromise": GateFloors(), "faults": GateFloors()}
    )
    planted: list[PlantedCase] = Field(default_factory=list)


class Settings(_Section):
    workspace: Path = Path("workspace")
    capture: CaptureSettings = CaptureSettings()
    flows: FlowSettings = FlowSettings()
    features: FeatureSettings = FeatureSettings()
    train: TrainSettings = TrainSettings()
    inspect: InspectSettings = InspectSettings()
    run: RunSettings = RunSettings()
    retrain: RetrainSettings = RetrainSettings()


def read_yaml(path: Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file holding a mapping, or a one-line error naming the file (and line) and the problem."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{what} not found", path=str(path))
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{where}not valid YAML", path=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", path=str(path))
    return data


def _merge(base: dict[str, Any], over: dict[str, Any], *, skip_none: bool = False) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v, skip_none=skip_none)
        elif v is not None or not skip_none:
            out[k] = v
    return out


def load_settings(config: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Resolve defaults, an optional user file and CLI overrides (``None`` values are ignored)."""
    data: dict[str, Any] = read_yaml(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else {}
    source = str(DEFAULT_CONFIG)
    if config is not None:
        data = _merge(data, read_yaml(Path(config)))
        source = str(config)
    if overrides:
        data = _merge(data, overrides, skip_none=True)
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{loc}: {err['msg']}", path=source) from None
