"""Fixtures for the capture tests: the shared real traces, a tshark runner, a whole-file reader."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pytest

from netsentry.pipeline.capture.reader import CaptureStats, read_packets
from netsentry.pipeline.core.schemas import PACKETS
from tests.paths import SHARED_DATA

TSHARK = shutil.which("tshark")

TsharkRows = list[dict[str, list[str]]]


def real_traces() -> list[str]:
    """Capture files under the shared data directory, relative to it (empty when it is absent)."""
    if not SHARED_DATA.is_dir():
        return []
    return sorted(str(p.relative_to(SHARED_DATA)) for p in SHARED_DATA.glob("**/*.pcap*") if p.is_file())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``real_trace`` over every shared capture, or one skipped case when there are none."""
    if "real_trace" in metafunc.fixturenames:
        names = real_traces()
        if names:
            metafunc.parametrize("real_trace", names)
        else:
            reason = f"no shared captures under {SHARED_DATA.resolve()} (expected <repo>/../shared/data)"
            metafunc.parametrize("real_trace", [pytest.param(None, marks=pytest.mark.skip(reason=reason))])


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-capture directory; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared captures not found at {SHARED_DATA.resolve()} (expected <repo>/../shared/data)")
    return SHARED_DATA.resolve()


def run_tshark(path: Path, fields: Sequence[str], *options: str) -> TsharkRows:
    """``tshark -T fields`` on ``path``: one dict per frame, each field a list of its occurrences."""
    assert TSHARK is not None
    cmd = [
        TSHARK,
        "-n",
        "-r",
        str(path),
        *options,
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "aggregator=|",
    ]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    rows = []
    for line in out.splitlines():
        values = line.split("\t")
        assert len(values) == len(fields), line
        rows.append({f: (v.split("|") if v else []) for f, v in zip(fields, values, strict=True)})
    return rows


@pytest.fixture(scope="session")
def tshark() -> Callable[..., TsharkRows]:
    """The tshark runner (:func:`run_tshark`); skips the test when tshark is not installed."""
    if TSHARK is None:
        pytest.skip("tshark is not installed")
    return run_tshark


def read_all(path: Path, **kw: object) -> tuple[pa.Table, CaptureStats]:
    """Read a whole capture with :func:`read_packets` into one table, with its stats."""
    stats = CaptureStats(path=str(path))
    tables = list(read_packets(path, stats=stats, **kw))  # type: ignore[arg-type]
    table = pa.concat_tables(tables) if tables else PACKETS.empty_table()
    return table, stats


@pytest.fixture(scope="session")
def read_capture() -> Callable[..., tuple[pa.Table, CaptureStats]]:
    """:func:`read_all`: ``read_capture(path, **reader_options) -> (table, stats)``."""
    return read_all
