"""Duration settings take what the duration flags take: 60, 60s, 1m, 500ms; anything else is a one-line ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsentry.pipeline.core.config import load_settings
from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.core.units import parse_duration_s


def _config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "netsentry.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("value", "seconds"), [("60", 60.0), ("60s", 60.0), ("1m", 60.0), ("500ms", 0.5), ("1.5m", 90.0), ("2h", 7200.0)]
)
def test_yaml_durations_read_as_the_flags_read_them(tmp_path: Path, value: str, seconds: float) -> None:
    text = f"features:\n  window_s: {value}\n  hop_s: {value}\n  fault_window_s: {value}\n"
    text += f"flows:\n  idle_timeout_s: {value}\n  active_timeout_s: {value}\n"
    s = load_settings(_config(tmp_path, text))
    assert (s.features.window_s, s.features.hop_s, s.features.fault_window_s) == (seconds, seconds, seconds)
    assert (s.flows.idle_timeout_s, s.flows.active_timeout_s) == (seconds, seconds)
    assert s.features.window_s == parse_duration_s(value, "--window")


def test_duration_overrides_and_defaults() -> None:
    s = load_settings(None, {"features": {"window_s": "30s", "hop_s": 5}, "flows": {"idle_timeout_s": "1m"}})
    assert (s.features.window_s, s.features.hop_s, s.features.fault_window_s) == (30.0, 5.0, 1.0)
    assert (s.flows.idle_timeout_s, s.flows.active_timeout_s) == (60.0, 1800.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("features:\n  window_s: 60x\n", "features.window_s: expected a duration like 60s, 1m or 500ms, got '60x'"),
        ("flows:\n  idle_timeout_s: soon\n", "flows.idle_timeout_s: expected a duration like 60s, 1m or 500ms, got 'soon'"),  # noqa: E501
        ("features:\n  hop_s: 0s\n", "features.hop_s: Input should be greater than 0"),
    ],
)  # fmt: skip
def test_bad_durations_name_the_field_on_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = _config(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_settings(path)
    assert str(ei.value) == f"{path}: {message}" and ei.value.exit_code == 2
