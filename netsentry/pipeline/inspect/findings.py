"""The findings contract: what ``inspect`` writes and the report, ``--json`` and scripts read.

One finding is one verdict an operator can act on: a VM (or address) that looks compromised over a
span of windows, or a fault incident (consecutive flagged fault windows of one scope merged).
``findings/findings.parquet`` holds one row per finding with ``evidence`` as JSON text;
``findings/findings.json`` holds ``{"meta": {...}, "findings": [...], "not_judged": [...]}`` with evidence as objects;
``not_judged`` lists ``{"scope", "ip", "what", "reason", "observed_s", "needed_s"}`` per behaviour a scope could not be
judged on (never silently clean).

Evidence layout (all keys optional; values are plain JSON):

* ``summary_features``: ``[{"name", "meaning", "value", "baseline", "peers", "vs_baseline", "vs_peers"}]``
  — the features furthest from this scope's own baseline and from its peers (numbers; ratios as x-fold).
* ``counts``: ``{name: number}`` — concrete counts over the flagged span (flows, failed handshakes, ...).
* ``remotes``: ``[{"ip", "flows", "packets", "bytes", "ports"}]`` — top remote endpoints.
* ``ports``: ``[{"port", "proto", "flows", "failed"}]`` — top remote ports.
* ``magnitude``: ``{name: number}`` — fault size (retransmission rate, RTT p99 vs baseline, lost packets, ...).
* ``loss_evidence``: ``{name: number}`` — for ``loss`` faults, what the minimum evidence of loss reads (retransmitted
  data segments, retransmitting flows, rate lower bound vs baseline, matched loss; see ``loss_evidence.py``).
* ``insufficient_evidence``: text — why a ``loss`` fault stays at low severity (e.g. "2 retransmitted data segments
  in 1 flow").
* ``claimants``: ``[{"mac", "address", "claims", "replies", "gratuitous", "first_ns", "last_ns"}]`` — for
  ``arp_spoofing``, every MAC claiming the address (``arp_scan`` and ``arp_spoofing`` keep their fields at the top
  level too, see ``arp.py``).
* ``timeline``: ``[{"start_ns", "end_ns", "score", "flag"}]`` — every window of this scope, for plots.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from netsentry.pipeline.core.tracking import ModelRef

KINDS = ("compromise", "fault")
SEVERITIES = ("high", "medium", "low")
FAULT_TYPES = ("loss", "reordering", "latency", "microburst", "reset_storm", "black_hole", "unreachable",
               "silent_service", "zero_window", "other")  # fmt: skip

FINDINGS = pa.schema(
    [
        pa.field("finding_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # compromise | fault
        pa.field("type", pa.string(), nullable=False),  # compromise, arp_scan, arp_spoofing; FAULT_TYPES
        pa.field("scope_type", pa.string(), nullable=False),  # vm | address | host | host_pair | capture_point
        pa.field("scope", pa.string(), nullable=False),  # e.g. "acme/acme-web-1", "host2-host3"
        pa.field("tenant", pa.string(), nullable=False),  # "" when not a tenant scope
        pa.field("vm", pa.string(), nullable=False),
        pa.field("ip", pa.string(), nullable=False),  # the VM's address(es), ";"-separated; "" when none
        pa.field("capture_point", pa.string(), nullable=False),
        pa.field("start_ns", pa.int64(), nullable=False),  # first flagged window's start (epoch ns, UTC)
        pa.field("end_ns", pa.int64(), nullable=False),  # last flagged window's end
        pa.field("windows", pa.int32(), nullable=False),  # flagged windows in the span
        pa.field("score", pa.float64(), nullable=False),  # highest window score in the span
        pa.field("threshold", pa.float64(), nullable=False),  # the model's threshold (after --threshold-scale)
        pa.field("severity", pa.string(), nullable=False),  # high | medium | low
        pa.field("model_uri", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("summary", pa.string(), nullable=False),  # one sentence a person reads
        pa.field("evidence", pa.string(), nullable=False),  # JSON object, layout in the module docstring
    ]
)


@dataclass
class Finding:
    """One verdict; field meanings as in :data:`FINDINGS` (``evidence`` as a dict here)."""

    finding_id: str
    kind: str
    type: str
    scope_type: str
    scope: str
    tenant: str
    vm: str
    ip: str
    capture_point: str
    start_ns: int
    end_ns: int
    windows: int
    score: float
    threshold: float
    severity: str
    model_uri: str
    model_version: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict, times also as ISO-8601 text."""
        d = asdict(self)
        d["start"] = pd.Timestamp(self.start_ns, unit="ns", tz="UTC").isoformat()
        d["end"] = pd.Timestamp(self.end_ns, unit="ns", tz="UTC").isoformat()
        return d


def finding_id(*parts: object) -> str:
    """A stable id from what identifies a finding."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def hhmmss(ns: int) -> str:
    """UTC wall-clock time of an epoch-ns instant."""
    return pd.Timestamp(int(ns), unit="ns", tz="UTC").strftime("%H:%M:%S")


def build_finding(
    kind: str,
    finding_type: str,
    *,
    id_parts: Sequence[object],
    scope_type: str,
    scope: str,
    start_ns: int,
    end_ns: int,
    windows: int,
    score: float,
    threshold: float,
    severity: str,
    model: ModelRef,
    evidence: dict[str, Any],
    summarize: Callable[[Finding], str],
    tenant: str = "",
    vm: str = "",
    ip: str = "",
    capture_point: str = "",
) -> Finding:
    """One finding of either kind: its id from ``id_parts``, the model that flagged it, and the sentence
    ``summarize`` writes from the finished fields."""
    f = Finding(
        finding_id=finding_id(*id_parts),
        kind=kind,
        type=finding_type,
        scope_type=scope_type,
        scope=scope,
        tenant=tenant,
        vm=vm,
        ip=ip,
        capture_point=capture_point,
        start_ns=start_ns,
        end_ns=end_ns,
        windows=windows,
        score=score,
        threshold=threshold,
        severity=severity,
        model_uri=model.uri,
        model_version=model.version,
        summary="",
        evidence=evidence,
    )
    f.summary = summarize(f)
    return f


def findings_table(findings: Sequence[Finding]) -> pa.Table:
    """Findings as a table of the :data:`FINDINGS` schema (evidence as JSON text)."""
    rows = [asdict(f) | {"evidence": json.dumps(f.evidence, sort_keys=True, default=_plain)} for f in findings]
    cols = {name: [r[name] for r in rows] for name in FINDINGS.names}
    return pa.table(cols, schema=FINDINGS)


def findings_document(findings: Sequence[Finding], meta: dict[str, Any]) -> str:
    """The ``findings.json`` text: ``{"meta": meta, "findings": [...], "not_judged": [...]}`` (``not_judged``: what
    the capture was too short or thin to judge, from ``meta["not_judged"]``, see ``not_judged.py``)."""
    head = {k: v for k, v in meta.items() if k != "not_judged"}
    doc = {"meta": head, "findings": [f.as_json() for f in findings], "not_judged": meta.get("not_judged", [])}
    return json.dumps(doc, indent=2, default=_plain) + "\n"


def findings_from_table(table: pa.Table) -> list[Finding]:
    """Findings back from a :data:`FINDINGS` table."""
    out = []
    for row in table.to_pylist():
        row["evidence"] = json.loads(row["evidence"]) if row["evidence"] else {}
        out.append(Finding(**row))
    return out


def _plain(o: Any) -> Any:
    """numpy scalars and the like as plain JSON values."""
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)
