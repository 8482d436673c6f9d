"""core.units and core.hashing with known answers: durations people type, numbers shown to people, hash finalisers."""

from __future__ import annotations

import numpy as np
import pytest

from netsentry.pipeline.core import units
from netsentry.pipeline.core.errors import ConfigError, NetsentryError
from netsentry.pipeline.core.hashing import MURMUR3_FMIX64, SPLITMIX64, finalize64

S = units.NS_PER_S
T0 = 1_714_564_800 * S  # 2024-05-01 12:00:00 UTC


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60", 60.0), ("60s", 60.0), (" 60S ", 60.0), ("1m", 60.0), ("1.5m", 90.0), ("500ms", 0.5), ("2h", 7200.0),
     ("0.25", 0.25), (30, 30.0), (1.5, 1.5), (None, None)],
)  # fmt: skip
def test_durations_parse_to_seconds(text: str | float | None, seconds: float | None) -> None:
    assert units.parse_duration_s(text, "--window") == seconds


@pytest.mark.parametrize("text", ["60x", "-5s", "1e3", "s", "", "1.2.3s", "one minute"])
def test_bad_durations_are_one_line_config_errors_naming_the_field(text: str) -> None:
    with pytest.raises(ConfigError) as ei:
        units.parse_duration_s(text, "--window")
    assert str(ei.value) == f"--window: expected a duration like 60s, 1m or 500ms, got {text!r}"
    assert "\n" not in str(ei.value)


def test_config_error_is_a_value_error_with_its_exit_code() -> None:
    e = ConfigError("bad", path="x.yaml")
    assert isinstance(e, ValueError) and isinstance(e, NetsentryError)
    assert e.exit_code == 2 and str(e) == "x.yaml: bad" and e.path == "x.yaml"
    with pytest.raises(ValueError, match="bad"):
        raise e


def test_byte_formatters() -> None:
    assert units.bytes_binary(512) == "512 B" and units.bytes_binary(1536) == "1.5 KB"
    assert units.bytes_binary(7 * 1024**2 + 1) == "7.0 MB" and units.bytes_binary(3 * 1024**5) == "3072.0 TB"
    assert units.bytes_decimal(3_400_000) == "3.4 MB" and units.bytes_decimal(2e9, per_s=True) == "2 GB/s"
    assert units.bytes_decimal(999) == "999 B" and units.bytes_decimal(None) == "–"


def test_number_formats() -> None:
    assert units.num(1_234_567) == "1,234,567" and units.num(0.0123) == "0.0123" and units.num(None) == "–"
    assert units.num(True) == "yes" and units.num(float("inf")) == "∞" and units.num(0.00012) == "1.20e-04"
    assert units.pct(0.1234) == "12.3 %" and units.pct(0.0001) == "<0.1 %" and units.pct(0.5) == "50 %"
    assert units.fold(120.4) == "120×" and units.fold(0.5) == "0.50×" and units.fold(3.27) == "3.3×"
    assert units.ms(0.35) == "0.35 ms" and units.ms(42.1) == "42 ms" and units.ms(1250) == "1.25 s"


def test_time_formats() -> None:
    assert units.duration(850_000_000) == "850 ms" and units.duration(12.5 * S) == "12.5 s"
    assert units.duration(245 * S) == "4 min 05 s" and units.duration(7380 * S) == "2 h 03 min"
    assert units.duration(93_600 * S) == "1 d 02 h" and units.duration(-1) == "–"
    assert units.utc(T0) == "2024-05-01 12:00:00" and units.utc(T0, "%H:%M:%S") == "12:00:00"
    assert units.utc(None) == "–" and units.utc(np.int64(T0)) == "2024-05-01 12:00:00"


def test_hash_finaliser_known_answers_scalar_and_array() -> None:
    # values of the finalisers as decode.py (pkt_hash) and assemble.py (flow_id) computed them before they were shared
    assert int(finalize64(np.uint64(1), MURMUR3_FMIX64)) == 0xB456BCFC34C2CB2C
    assert int(finalize64(np.uint64(0xDEADBEEF), MURMUR3_FMIX64)) == 0xD24BD59F862A1DAC
    assert int(finalize64(np.uint64(2**64 - 1), MURMUR3_FMIX64)) == 0x64B5720B4B825F21
    x = np.array([1, 0xDEADBEEF], np.uint64) ^ np.array([0, 1_700_000_000_000_000_000], np.int64).astype(np.uint64)
    out = finalize64(x, SPLITMIX64)
    assert out.dtype == np.uint64 and [int(v) for v in out] == [0x5692161D100B05E5, 0x6CEF4747CBB88EE1]
