"""The open corpus (``../shared/data/open``): real public captures with ground truth in ``MANIFEST.tsv``, each run
through capture → flows → features → inspect in-process and judged as issue 15 says. Validation only: nothing
here may feed training or a threshold.

Judging (a finding counts when its severity is medium or high):

* ``attack`` / ``l2``: passes when a compromise finding names one of the case's ``hosts`` (in ``ip``, which may
  hold several ``;``-separated addresses, in ``scope`` or in ``vm``);
* ``benign``: passes when there is no compromise finding. Fault findings on a benign capture are shown in the
  table but not judged yet: they are allowed where the packets show real loss by the minimum-evidence rule, and
  which ones do is that rule's job (issue 15, deliverable 6), not this table's;
* ``fault``: passes when there is a fault finding.

A capture the pipeline cannot read anything usable from (exit 4: :class:`CaptureFormatError`,
:class:`NoUsableDataError`) is a failed case with the reason, not an error.

Used by ``tests/train/test_open_corpus.py`` and ``python -m bench.open_corpus`` (the one copy of the judging).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from netsentry.pipeline.core.errors import CaptureFormatError, ConfigError, InputNotFoundError, NoUsableDataError
from netsentry.pipeline.inspect import InspectOptions, run_inspect
from netsentry.pipeline.inspect.findings import Finding
from tests.conftest import workspace_of
from tests.paths import SHARED_DATA

OPEN_DATA = SHARED_DATA / "open"
MANIFEST = "MANIFEST.tsv"
CLASSES = ("attack", "benign", "fault", "l2")
ALARMING = ("high", "medium")  # severities that count; low findings stay in the report only
MANIFEST_FIELDS = ("file", "class", "hosts")


@dataclass(frozen=True)
class Case:
    """One capture of the corpus: its path under the corpus root, its class and the hosts a finding must name."""

    file: str
    cls: str
    hosts: tuple[str, ...]


@dataclass
class Outcome:
    """A judged case: whether it passed, the findings that decided it, and (benign only) its fault findings."""

    case: Case
    passed: bool
    deciding: list[str] = field(default_factory=list)
    unjudged_faults: list[str] = field(default_factory=list)
    error: str | None = None


def load_cases(root: Path = OPEN_DATA) -> list[Case]:
    """The cases of ``root/MANIFEST.tsv``, in its order."""
    path = root / MANIFEST
    if not path.is_file():
        raise InputNotFoundError("open-corpus manifest not found", path=str(path))
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    cases = []
    for n, row in enumerate(rows, start=2):
        missing = [k for k in MANIFEST_FIELDS if row.get(k) is None]
        if missing:
            raise ConfigError(f"line {n}: no {missing[0]!r} column", path=str(path))
        if row["class"] not in CLASSES:
            raise ConfigError(f"line {n}: class {row['class']!r} is not one of {', '.join(CLASSES)}", path=str(path))
        hosts = tuple(h for h in row["hosts"].split(";") if h)
        if row["class"] in ("attack", "l2") and not hosts:
            raise ConfigError(f"line {n}: an {row['class']} case needs 'hosts'", path=str(path))
        cases.append(Case(row["file"], row["class"], hosts))
    return cases


def names(f: Finding) -> set[str]:
    """Every host name a finding gives: its addresses, scope and VM."""
    return {*f.ip.split(";"), f.scope, f.vm} - {""}


def label(f: Finding) -> str:
    """A finding in one token: ``c:compromise:high:10.0.0.1``."""
    return f"{f.kind[0]}:{f.type}:{f.severity}:{f.ip or f.scope}"


def judge(case: Case, findings: Sequence[Finding]) -> Outcome:
    """The issue-15 verdict on one case's findings (module docstring)."""
    alarming = [f for f in findings if f.severity in ALARMING]
    comp = [f for f in alarming if f.kind == "compromise"]
    fault = [f for f in alarming if f.kind == "fault"]
    if case.cls in ("attack", "l2"):
        hits = [f for f in comp if names(f) & set(case.hosts)]
        shown = hits or comp
        return Outcome(case, bool(hits), [label(f) for f in shown] or ["no medium/high compromise finding"])
    if case.cls == "benign":
        # judged on compromise findings only; fault findings are reported until the minimum-evidence rule decides
        decided = [label(f) for f in comp] or ["no medium/high compromise finding"]
        return Outcome(case, not comp, decided, unjudged_faults=[label(f) for f in fault])
    return Outcome(case, bool(fault), [label(f) for f in fault] or ["no medium/high fault finding"])


def run_case(case: Case, workdir: Path, tracking_uri: str, root: Path = OPEN_DATA) -> Outcome:
    """One capture through capture → flows → features → inspect (champions of ``tracking_uri``), judged."""
    ws = workdir / case.file.replace("/", "_")
    try:  # a missing champion (TrackingError) is not the capture's fault: it propagates
        workspace_of([root / case.file], ws)
        res = run_inspect(ws, InspectOptions(force=True, log_run=False), tracking_uri=tracking_uri)
    except (CaptureFormatError, NoUsableDataError) as e:
        return Outcome(case, False, [f"unusable capture: {e}"], error=str(e))
    return judge(case, res.findings)


def run_corpus(workdir: Path, tracking_uri: str, root: Path = OPEN_DATA) -> list[Outcome]:
    """Every case of the corpus, in manifest order."""
    return [run_case(c, workdir, tracking_uri, root) for c in load_cases(root)]


def counts(outcomes: Iterable[Outcome]) -> dict[str, tuple[int, int]]:
    """Passed and total cases per class."""
    tally: dict[str, tuple[int, int]] = {}
    for o in outcomes:
        ok, n = tally.get(o.case.cls, (0, 0))
        tally[o.case.cls] = (ok + o.passed, n + 1)
    return tally


def passing(outcomes: Iterable[Outcome]) -> set[str]:
    """Files of the cases that passed."""
    return {o.case.file for o in outcomes if o.passed}


def table(outcomes: Sequence[Outcome]) -> str:
    """The per-case table (class, PASS/FAIL, file, deciding findings; benign fault findings marked as not judged)
    and the per-class counts."""
    width = max((len(o.case.file) for o in outcomes), default=4)
    lines = [f"{'class':7} {'':4} {'capture':{width}} decided by", f"{'-' * 7} {'-' * 4} {'-' * width} {'-' * 10}"]
    for o in outcomes:
        why = "; ".join(o.deciding[:4]) + (f" (+{len(o.deciding) - 4})" if len(o.deciding) > 4 else "")
        if o.unjudged_faults:
            why += f" | faults, not judged: {'; '.join(o.unjudged_faults[:3])}"
        lines.append(f"{o.case.cls:7} {'PASS' if o.passed else 'FAIL'} {o.case.file:{width}} {why}")
    lines.append("")
    lines += [f"{cls:7} {ok}/{n}" for cls, (ok, n) in counts(outcomes).items()]
    return "\n".join(lines)
