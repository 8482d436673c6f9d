"""The workspace catalogue: table locations, manifests, and the one up-to-date rule every stage uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netsentry.pipeline.core import catalog, schemas
from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.core.io import write_manifest

INPUTS = {"packets_manifest_sha256": "ab" * 32}
CONFIG = {"idle_timeout_s": 120.0, "active_timeout_s": 1800.0}
EXPECTED = {"inputs": INPUTS, "config": CONFIG}


def test_tables_have_their_workspace_directories_and_schemas(tmp_path: Path) -> None:
    dirs = {name: t.dir for name, t in catalog.TABLES.items()}
    assert dirs == {
        "packets": "packets",
        "arp": "arp",
        "dns": "dns",
        "stratum": "stratum",
        "flows": "flows",
        "tcp_events": "tcp_events",
        "tenant_windows": "features/tenant_windows",
        "fault_windows": "features/fault_windows",
        "findings": "findings",
    }
    assert catalog.PACKETS.schema is schemas.PACKETS
    assert catalog.ARP.schema is schemas.ARP
    assert catalog.DNS.schema is schemas.DNS
    assert catalog.STRATUM.schema is schemas.STRATUM
    assert catalog.FLOWS.schema is schemas.FLOWS
    assert catalog.TCP_EVENTS.schema is schemas.TCP_EVENTS
    assert catalog.path(tmp_path, catalog.FAULT_WINDOWS) == tmp_path / "features" / "fault_windows"
    assert catalog.path(str(tmp_path), "tenant_windows") == tmp_path / "features" / "tenant_windows"
    assert catalog.FEATURE_TABLES == {"compromise": catalog.TENANT_WINDOWS, "faults": catalog.FAULT_WINDOWS}
    assert catalog.train_record_path(tmp_path, "faults") == tmp_path / "train" / "faults.json"
    # an entry is its name, so code that names tables by string (retrain, train's messages) keeps working
    assert catalog.TENANT_WINDOWS.name == "tenant_windows"
    assert catalog.table("tenant_windows") is catalog.TENANT_WINDOWS
    with pytest.raises(ConfigError, match="unknown table 'nope'"):
        catalog.path(tmp_path, "nope")


def test_manifest_and_train_record_read_back(tmp_path: Path) -> None:
    assert catalog.manifest(tmp_path, catalog.FLOWS) is None
    assert catalog.read_train_record(tmp_path, "compromise") is None
    write_manifest(catalog.path(tmp_path, catalog.FLOWS), {"stage": "flows", "rows": 7})
    m = catalog.manifest(tmp_path, "flows")
    assert m is not None and m["rows"] == 7 and m["stage"] == "flows" and "netsentry_version" in m
    record = catalog.train_record_path(tmp_path, "compromise")
    record.parent.mkdir()
    record.write_text(json.dumps({"key": {"features": "x"}, "version": "3"}))
    assert catalog.read_train_record(tmp_path, "compromise") == {"key": {"features": "x"}, "version": "3"}


def test_unchanged_inputs_and_config_are_up_to_date() -> None:
    record = {"stage": "flows", "rows": 3, **EXPECTED}
    assert catalog.up_to_date([record], EXPECTED)
    assert catalog.up_to_date([record, dict(record, table="tcp_events")], EXPECTED)
    assert catalog.up_to_date([{"key": {"a": 1}, "version": "2"}], {"key": {"a": 1}})


@pytest.mark.parametrize(
    "changed",
    [
        {"config": {**CONFIG, "idle_timeout_s": 60.0}},
        {"config": {"idle_timeout_s": 120.0}},
        {"inputs": {"packets_manifest_sha256": "cd" * 32}},
        {"inputs": None},
    ],
)
def test_changed_config_or_input_digest_is_not_up_to_date(changed: dict) -> None:
    record = {**EXPECTED, **changed}
    assert not catalog.up_to_date([record], EXPECTED)
    assert not catalog.up_to_date([dict(EXPECTED), record], EXPECTED)


def test_missing_or_partial_output_is_not_up_to_date(tmp_path: Path) -> None:
    assert not catalog.up_to_date([None], EXPECTED)
    assert not catalog.up_to_date([{}], EXPECTED)
    assert not catalog.up_to_date([dict(EXPECTED), None], EXPECTED)  # flows written, tcp_events missing
    assert not catalog.up_to_date([{"config": CONFIG}], EXPECTED)  # a manifest without inputs
    report = tmp_path / "report.html"
    assert not catalog.up_to_date([dict(EXPECTED)], EXPECTED, outputs=[report])
    report.write_text("<html></html>")
    assert catalog.up_to_date([dict(EXPECTED)], EXPECTED, outputs=[report])


def test_force_is_never_up_to_date(tmp_path: Path) -> None:
    assert not catalog.up_to_date([dict(EXPECTED)], EXPECTED, force=True)
    assert not catalog.up_to_date([{"key": 1}], {"key": 1}, force=True)


def test_stage_manifests_round_trip_through_the_catalogue(tmp_path: Path) -> None:
    write_manifest(catalog.path(tmp_path, catalog.FLOWS), {"stage": "flows", **EXPECTED})
    write_manifest(catalog.path(tmp_path, catalog.TCP_EVENTS), {"stage": "flows", "table": "tcp_events", **EXPECTED})
    both = [catalog.manifest(tmp_path, t) for t in (catalog.FLOWS, catalog.TCP_EVENTS)]
    assert catalog.up_to_date(both, EXPECTED)
    assert not catalog.up_to_date(both, {**EXPECTED, "config": {**CONFIG, "active_timeout_s": 60.0}})
