"""The workspace catalogue: where every stage table lives, its schema, its manifest, and when it is up to date.

Stages, ``netsentry run`` and export look table locations up here instead of importing each other's constants.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from netsentry.pipeline.core import schemas
from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.core.io import read_manifest


@dataclass(frozen=True)
class Table:
    """A workspace table: its ``name`` (as the CLI spells it), ``dir`` relative to the workspace, and its schema where
    fixed. Locate it with :func:`path`."""

    name: str
    dir: str
    schema: pa.Schema | None = None


PACKETS = Table("packets", "packets", schemas.PACKETS)
ARP = Table("arp", "arp", schemas.ARP)
DNS = Table("dns", "dns", schemas.DNS)
STRATUM = Table("stratum", "stratum", schemas.STRATUM)
FLOWS = Table("flows", "flows", schemas.FLOWS)
TCP_EVENTS = Table("tcp_events", "tcp_events", schemas.TCP_EVENTS)
TENANT_WINDOWS = Table("tenant_windows", "features/tenant_windows")
FAULT_WINDOWS = Table("fault_windows", "features/fault_windows")
FINDINGS = Table("findings", "findings")

TABLES: dict[str, Table] = {
    t.name: t for t in (PACKETS, ARP, DNS, STRATUM, FLOWS, TCP_EVENTS, TENANT_WINDOWS, FAULT_WINDOWS, FINDINGS)
}
"""Every workspace table by name, in pipeline order."""

FEATURE_TABLES: dict[str, Table] = {"compromise": TENANT_WINDOWS, "faults": FAULT_WINDOWS}
"""The features table each detector kind trains on and scores."""

TRAIN_RECORDS_DIR = "train"
"""``netsentry run`` records each training as ``train/<kind>.json`` (see :func:`train_record_path`)."""


def table(name: Table | str) -> Table:
    """The catalogue entry for a table or its name (a typed error for an unknown name)."""
    if isinstance(name, Table):
        return name
    try:
        return TABLES[name]
    except KeyError:
        raise ConfigError(f"unknown table {name!r}; expected one of {', '.join(TABLES)}") from None


def path(workspace: str | Path, entry: Table | str) -> Path:
    """The directory of a table in a workspace."""
    return Path(workspace) / table(entry).dir


def manifest(workspace: str | Path, entry: Table | str) -> dict[str, Any] | None:
    """A table's ``_manifest.json`` in a workspace, or ``None`` when it has none."""
    return read_manifest(path(workspace, entry))


def train_record_path(workspace: str | Path, kind: str) -> Path:
    """Where ``netsentry run`` records the training of a detector kind."""
    return Path(workspace) / TRAIN_RECORDS_DIR / f"{kind}.json"


def read_train_record(workspace: str | Path, kind: str) -> dict[str, Any] | None:
    """The training record of a detector kind, or ``None`` when there is none."""
    p = train_record_path(workspace, kind)
    return json.loads(p.read_text()) if p.is_file() else None


def up_to_date(
    records: Iterable[Mapping[str, Any] | None],
    expected: Mapping[str, Any],
    *,
    force: bool = False,
    outputs: Iterable[Path] = (),
) -> bool:
    """Whether a stage may skip itself: not forced, every record (manifest) present and non-empty with
    ``expected``'s value under each of its keys, and every other output file present.

    One stage's outputs are all its ``records``: a missing one (a partial output) means the stage runs again.
    """
    if force:
        return False
    if not all(r and all(r.get(k) == v for k, v in expected.items()) for r in records):
        return False
    return all(Path(p).exists() for p in outputs)
