"""Scenario files (``configs/scenarios/*.yaml``): the cloud to simulate, its benign load and the
events (compromises and faults) to inject, validated once by pydantic."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from netsentry.pipeline.core.config import read_yaml
from netsentry.pipeline.core.errors import ConfigError

ROLES = ("web", "app", "db", "dns", "batch", "admin", "p2p", "desktop")
"""VM roles: what a VM serves and which benign traffic it makes (see :mod:`netsentry.pipeline.simulate.benign`)."""
CAPTURE_POINTS = ("vm", "host", "gateway")
"""Observation tiers: every VM's tap, every host's uplink, the internet gateway (one pcap each)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VmGroup(_Model):
    """``count`` VMs of one role in a subnet, named ``<prefix>-<i>`` (prefix defaults to the role)."""

    role: Literal["web", "app", "db", "dns", "batch", "admin", "p2p", "desktop"]
    count: int = Field(1, ge=1, le=4096)
    prefix: str | None = None


class SubnetSpec(_Model):
    name: str
    cidr: str
    vms: list[VmGroup] = []


class VpcSpec(_Model):
    id: str
    cidr: str
    vni: int | None = Field(None, ge=1, le=(1 << 24) - 1)
    subnets: list[SubnetSpec] = []


class TenantSpec(_Model):
    name: str
    rate: float = Field(1.0, gt=0, description="benign activity multiplier for this tenant")
    vpcs: list[VpcSpec]


class CloudSpec(_Model):
    hosts: int = Field(4, ge=1, le=4096)
    external_hosts: int = Field(200, ge=4, le=1_000_000)
    tenants: list[TenantSpec]


class EventSpec(_Model):
    """One injected behaviour. ``kind`` compromise: ``target`` is a VM name; fault: a host
    (``host3``), ``gateway``, a host pair (``host1-host2``) or a VM name (its host's uplink)."""

    kind: Literal["compromise", "fault"]
    type: str
    target: str
    start_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)
    params: dict[str, Any] = {}


class EpisodeBlock(_Model):
    """Events drawn at random between ``start_s`` and ``end_s`` (see :mod:`netsentry.pipeline.simulate.episodes`):
    ``compromise`` and ``faults`` map a behaviour type to how many episodes of it to draw."""

    start_s: float = Field(0.0, ge=0)
    end_s: float = Field(gt=0)
    seed: int = 0
    compromise: dict[str, int] = {}
    faults: dict[str, int] = {}

    @model_validator(mode="after")
    def _ordered(self) -> EpisodeBlock:
        if self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be after start_s ({self.start_s})")
        if any(n < 0 for n in (*self.compromise.values(), *self.faults.values())):
            raise ValueError("episode counts must be >= 0")
        return self


class Scenario(_Model):
    name: str
    description: str = ""
    duration_s: float = Field(60.0, gt=0, le=7 * 86400)
    start: datetime = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
    seed: int = 0
    overlay: Literal["none", "vxlan"] = "none"
    capture_points: list[Literal["vm", "host", "gateway"]] = ["vm"]
    benign_rate: float = Field(1.0, ge=0, description="global multiplier of benign connection rates")
    vm_load_sigma: float = Field(
        0.5,
        ge=0,
        le=2,
        description="spread of per-VM load: each VM's benign rates × a lognormal factor of mean 1 "
        "and this log-sd (VMs of one role are not equally busy); 0 = every VM at its tenant's rate",
    )
    habits: bool = Field(True, description="per-VM habits, p2p clients, desktop browsing (simulate.habits, p2p)")
    ambient_impairments: bool = Field(True, description="ambient loss and reordering on internet paths")
    cloud: CloudSpec
    events: list[EventSpec] = []
    episodes: list[EpisodeBlock] = Field(
        [], description="blocks of randomly drawn events (each behaviour several times, in its variety)"
    )

    @model_validator(mode="after")
    def _events_fit(self) -> Scenario:
        for i, e in enumerate(self.events):
            if e.start_s >= self.duration_s:
                raise ValueError(f"events[{i}] starts at {e.start_s} s, after the scenario ends ({self.duration_s} s)")
        for i, b in enumerate(self.episodes):
            if b.start_s >= self.duration_s:
                end = self.duration_s
                raise ValueError(f"episodes[{i}] starts at {b.start_s} s, after the scenario ends ({end} s)")
        if len(set(self.capture_points)) != len(self.capture_points):
            raise ValueError("capture_points lists a point twice")
        return self

    @property
    def start_ns(self) -> int:
        return int(self.start.timestamp() * 1e9)


def load_scenario(path: str | Path, *, duration_s: float | None = None, seed: int | None = None) -> Scenario:
    """Read and validate a scenario file; ``duration_s``/``seed`` override the file's."""
    p = Path(path)
    data = read_yaml(p, "scenario file")
    if duration_s is not None:
        data["duration_s"] = duration_s
        # a shortened run keeps only the events that start within it
        data["events"] = [e for e in data.get("events") or [] if float(e.get("start_s", 0)) < duration_s]
        data["episodes"] = [b for b in data.get("episodes") or [] if float(b.get("start_s", 0)) < duration_s]
    if seed is not None:
        data["seed"] = seed
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "scenario"
        raise ConfigError(f"{loc}: {err['msg']}", path=str(p)) from None
