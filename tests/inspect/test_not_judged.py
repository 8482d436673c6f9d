"""Short captures: what they cannot show is reported as not judged (known answers), and severity fits the capture."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.tracking import ModelRef
from netsentry.pipeline.inspect.compromise import MIN_CONNECTIONS, SUSTAINED_WINDOWS, sustained_windows
from netsentry.pipeline.inspect.findings import build_finding, findings_document
from netsentry.pipeline.inspect.not_judged import (
    baseline_scopes,
    beacon_scopes,
    compromise_not_judged,
    sustained_scopes,
    thin_scopes,
)
from netsentry.pipeline.inspect.scoring import severity
from netsentry.pipeline.report.not_judged import not_judged_section
from tests.features.test_tenant_windows import flow, flows_table

NS = 1_000_000_000


def windows(rows: list[tuple[str, int, int, float, float]]) -> pd.DataFrame:
    """Scored tenant windows: (scope, flag, active_flows, history_s, observed_s), one window start each."""
    return pd.DataFrame(
        {
            "scope": [r[0] for r in rows],
            "ip": [r[0] for r in rows],
            "flag": [r[1] for r in rows],
            "active_flows": [r[2] for r in rows],
            "history_s": [r[3] for r in rows],
            "observed_s": [r[4] for r in rows],
            "window_start_ns": [0] * len(rows),
        }
    )


def test_scopes_the_support_rule_dropped_are_not_judged() -> None:
    before = windows([("thin", 1, 1, 0.0, 4.0), ("busy", 1, 40, 0.0, 4.0), ("quiet", 0, 1, 0.0, 4.0)])
    after = before.assign(flag=[0, 1, 0])
    (j,) = thin_scopes(before, after)
    assert (j.scope, j.what, j.observed_s, j.needed_s) == ("thin", "compromise", 4.0, None)
    assert f">= {MIN_CONNECTIONS}" in j.reason


def test_baseline_needs_a_window_of_history() -> None:
    scored = windows([("new", 0, 10, 0.0, 4.0), ("old", 0, 10, 120.0, 60.0), ("tiny", 0, 1, 0.0, 4.0)])
    (j,) = baseline_scopes(scored, window_s=60.0, hop_s=10.0)
    assert (j.scope, j.what, j.observed_s, j.needed_s) == ("new", "baseline", 4.0, 70.0)


def test_sustained_is_every_window_a_short_capture_covers() -> None:
    assert [sustained_windows(n) for n in (0, 1, 2, 3, 10)] == [1, 1, 2, SUSTAINED_WINDOWS, SUSTAINED_WINDOWS]
    # a 4 s capture covers one window: flagged in it is sustained (medium), far beyond benign makes it high
    assert severity(1, math.nan, sustained=sustained_windows(1)) == "medium"
    assert severity(1, 0.0, sustained=sustained_windows(1)) == "high"
    # a long capture still needs three windows
    assert severity(1, math.nan, sustained=sustained_windows(30)) == "low"


def _finding(scope: str) -> object:
    model = ModelRef(uri="models:/m/1", name="m", version="1", run_id="r", experiment_id="0")
    return build_finding("compromise", "compromise", id_parts=(scope,), scope_type="vm", scope=scope, start_ns=0,
                         end_ns=60 * NS, windows=1, score=9.0, threshold=1.0, severity="high", model=model,
                         evidence={}, summarize=lambda f: "x", ip="10.0.0.9")  # fmt: skip


def test_sustained_not_judged_on_a_one_window_capture() -> None:
    (j,) = sustained_scopes([_finding("scanner")], capture_windows=1, capture_s=4.1, window_s=60.0, hop_s=10.0)
    assert (j.scope, j.what, j.observed_s, j.needed_s) == ("scanner", "sustained", 4.1, 80.0)
    assert sustained_scopes([_finding("scanner")], capture_windows=3, capture_s=80.0, window_s=60.0, hop_s=10.0) == []


def _workspace(tmp_path: Path, rows: list[dict]) -> Path:
    d = catalog.path(tmp_path, catalog.FLOWS)
    d.mkdir(parents=True)
    pq.write_table(flows_table(rows), d / "part-00000.parquet")
    return tmp_path


def test_a_beacon_seen_three_times_in_a_short_capture_is_not_judged(tmp_path: Path) -> None:
    # three check-ins 30 s apart, capture ends at 70 s: a 30 s timer needs 4 gaps (120 s)
    rows = [flow("10.0.0.1", "203.0.113.5", 443, s, dur_s=1.0) for s in (0.0, 30.0, 60.0)]
    rows.append(flow("10.0.0.1", "198.51.100.1", 80, 69.0, dur_s=1.0))
    (j,) = beacon_scopes(_workspace(tmp_path, rows))
    assert (j.scope, j.ip, j.what) == ("acme/acme-web-1", "10.0.0.1", "beacon")
    assert j.observed_s == pytest.approx(70.0) and j.needed_s == pytest.approx(120.0)
    assert "203.0.113.5:443 3 times 30.0 s apart" in j.reason


def test_three_starts_in_a_long_enough_capture_or_a_burst_are_judged(tmp_path: Path) -> None:
    rows = [flow("10.0.0.1", "203.0.113.5", 443, s, dur_s=1.0) for s in (0.0, 30.0, 60.0)]
    rows.append(flow("10.0.0.1", "198.51.100.1", 80, 299.0, dur_s=1.0))  # capture held 300 s: room for 4 gaps
    rows += [flow("10.0.0.1", "203.0.113.6", 443, s, dur_s=0.0) for s in (1.0, 1.1, 1.2)]  # a burst, no timer
    assert beacon_scopes(_workspace(tmp_path, rows)) == []


def test_findings_json_and_report_list_not_judged_escaped(tmp_path: Path) -> None:
    before = windows([("<script>x</script>", 1, 1, 0.0, 3.4)])
    items = compromise_not_judged(tmp_path, before, before.assign(flag=0), [], 60.0, 10.0)
    assert [j.what for j in items] == ["compromise"]
    meta = {"not_judged": [j.as_json() for j in items]}
    doc = json.loads(findings_document([], meta))
    assert doc["not_judged"][0]["scope"] == "<script>x</script>" and "not_judged" not in doc["meta"]
    html = not_judged_section(meta)
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>" not in html
    assert "3.4 s" in html and not_judged_section({}) == ""
