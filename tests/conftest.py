"""Shared fixtures: the real captures (../shared/data) and a tshark runner, a whole-file reader, and the expensive
ones: the simulated ``mixed`` cloud through every stage and the models trained on it.

Tests that use them carry ``@pytest.mark.xdist_group("mixed")`` so that, with ``pytest -n 2 --dist loadgroup``
(the Makefile's default), one worker builds them once for all of those tests.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from netsentry.pipeline.capture.reader import CaptureStats, read_packets
from netsentry.pipeline.capture.stage import CaptureOptions, run_capture
from netsentry.pipeline.core.schemas import ARP, PACKETS
from netsentry.pipeline.features.stage import run_features
from netsentry.pipeline.flows.stage import run_flows
from netsentry.pipeline.simulate.stage import simulate_to_dir
from netsentry.pipeline.train.options import TrainOptions
from netsentry.pipeline.train.stage import TrainResult, run_train
from tests.paths import REPO as ROOT
from tests.paths import SHARED_DATA

SHARED = SHARED_DATA

# real captures from ../shared/data (its README names who attacks whom and which fault)
ATTACKERS = {
    "zeek/traces/ssh/sshguess.pcap": "192.168.56.1",
    "zeek/traces/ftp/bruteforce.pcap": "192.168.56.1",
    "chrissanders/synscan.pcapng": "172.16.0.8",
    "stopddos/pkt.TCP.synflood.spoofed.pcap": "10.10.10.10",  # spoofed sources: the flood's target is the finding
}
BENIGN = [
    "zeek/traces/http/bro.org.pcap",
    "zeek/traces/smb/smb2.pcap",
    "zeek/traces/ftp/cwd-navigation.pcap",
    "zeek/traces/modbus/modbusBig.pcap",
    "zeek/traces/wikipedia.pcap",
    "chrissanders/http_espn.pcapng",
]
FAULTY = ["zeek/traces/tcp/ssh-dups.pcap", "chrissanders/tcp_retransmissions.pcapng"]
FAULT_FREE = ["zeek/traces/http/bro.org.pcap", "chrissanders/http_espn.pcapng"]


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_delivered() -> None:
    """Let SIGINT through to the tests that send Ctrl-C (live capture, retrain loop, UI). A shell without job control
    starts background commands (``make test &``) with SIGINT ignored, and children inherit that: those tests then
    failed for the shell's reason, not ours. Python's handler is reset to the default in the processes they spawn."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mixed scenario through every stage, with its labels (~15M packets; about three minutes). 256 bytes a
    frame, as a tap that keeps headers and the first application bytes: enough for a pool's JSON method name behind
    a VXLAN header (128 keeps ~15 payload bytes there)."""
    d = tmp_path_factory.mktemp("mixed")
    simulate_to_dir(ROOT / "configs/scenarios/mixed.yaml", d / "sim", snaplen=256)
    ws = d / "ws"
    pcaps = sorted((d / "sim").glob("*.pcap"))
    run_capture(pcaps, ws, CaptureOptions(tenants=d / "sim" / "tenants.yaml"))
    run_flows(ws)
    run_features(ws, labels=d / "sim" / "labels.csv")
    return ws


@pytest.fixture(scope="session")
def trained(mixed: Path) -> dict[str, TrainResult]:
    """Champions of both kinds, trained on mixed and registered in the workspace's MLflow store."""
    return {kind: run_train(mixed, TrainOptions(kind=kind)) for kind in ("compromise", "faults")}


def workspace_of(captures: list[Path], ws: Path, tenants: Path | None = None) -> Path:
    """Captures through capture → flows → features (no labels) into ``ws``."""
    run_capture(captures, ws, CaptureOptions(tenants=tenants))
    run_flows(ws)
    run_features(ws)
    return ws


@pytest.fixture(scope="session")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each real capture named above through capture → flows → features (no tenant map, no labels)."""
    if not SHARED.is_dir():
        pytest.skip(f"shared captures not found at {SHARED} (expected <repo>/../shared/data)")
    d = tmp_path_factory.mktemp("real")
    return {rel: workspace_of([SHARED / rel], d / Path(rel).stem) for rel in [*ATTACKERS, *BENIGN, *FAULTY]}


# capture: the shared real traces one by one, tshark, a whole-file reader
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


def read_tables(reader: Callable[..., Any], path: Path, **kw: object) -> tuple[pa.Table, pa.Table, CaptureStats]:
    """A whole capture through a batch reader (``read_capture`` or the pyshark engine's): packets, ARP, stats."""
    stats = CaptureStats(path=str(path))
    batches = list(reader(path, stats=stats, **kw))
    packets = [b.packets for b in batches if b.packets is not None]
    arp = [b.arp for b in batches if b.arp is not None]
    return (
        pa.concat_tables(packets) if packets else PACKETS.empty_table(),
        pa.concat_tables(arp) if arp else ARP.empty_table(),
        stats,
    )


@pytest.fixture(scope="session")
def read_capture() -> Callable[..., tuple[pa.Table, CaptureStats]]:
    """:func:`read_all`: ``read_capture(path, **reader_options) -> (table, stats)``."""
    return read_all
