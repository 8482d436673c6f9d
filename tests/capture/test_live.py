"""Live capture through dumpcap: loopback capture read back by the fast reader, and the error cases."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from netsentry.pipeline.capture.live import CapturePermissionError, _classify, capture_live, list_interfaces
from netsentry.pipeline.capture.reader import read_packets
from netsentry.pipeline.core.errors import ConfigError, InputNotFoundError, ToolMissingError

DUMPCAP = shutil.which("dumpcap")
needs_dumpcap = pytest.mark.skipif(DUMPCAP is None, reason="dumpcap is not installed")
needs_root = pytest.mark.skipif(
    DUMPCAP is None or os.geteuid() != 0, reason="live capture needs root and dumpcap (capturing on lo)"
)


class UdpSender:
    """Sends UDP datagrams to 127.0.0.1:<free port> every few ms until stopped (bounded)."""

    def __init__(self, max_datagrams: int = 2000, interval_s: float = 0.005, size: int = 16) -> None:
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("127.0.0.1", 0))
        self.port = self.sink.getsockname()[1]
        self.max_datagrams, self.interval_s, self.size = max_datagrams, interval_s, size
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while self.sent < self.max_datagrams and not self.stop.is_set():
                s.sendto((b"netsentry-%d " % self.sent).ljust(self.size, b"x"), ("127.0.0.1", self.port))
                self.sent += 1
                time.sleep(self.interval_s)

    def __enter__(self) -> UdpSender:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.sink.close()


def _read_files(files: list[Path]) -> pa.Table:
    return pa.concat_tables([t for f in files for t in read_packets(f)])


@needs_root
def test_capture_lo_count(tmp_path: Path) -> None:
    n, spool = 25, tmp_path / "spool"
    with UdpSender() as sender:
        files = capture_live("lo", spool, count=n, duration=30, bpf=f"udp dst port {sender.port}")
    assert files and all(f.suffix == ".pcapng" and f.parent == spool for f in files)
    table = _read_files(files)
    assert table.num_rows == n
    assert set(table["dst_port"].to_pylist()) == {sender.port}
    assert set(table["proto"].to_pylist()) == {17}


@needs_root
def test_ring_buffer_keeps_newest_files_in_order(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    with UdpSender(size=50_000) as sender:  # ~5 MB through 1 MB files, only the last 2 kept
        files = capture_live("lo", spool, count=100, duration=30, ring_file_mb=1, ring_files=2,
                             bpf=f"udp dst port {sender.port}")  # fmt: skip
    assert len(files) == 2
    assert sorted(spool.iterdir()) == files
    first, second = (int(f.name.split("_")[1]) for f in files)
    assert second == first + 1 >= 3
    table = _read_files(files)
    assert 0 < table.num_rows < 100
    ts = table["ts_ns"].to_numpy()
    assert (ts[1:] >= ts[:-1]).all()


@needs_root
def test_ctrl_c_stops_and_keeps_files(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    main = threading.main_thread().ident
    assert threading.current_thread().ident == main

    def interrupt_once_capturing() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (spool.is_dir() and any(spool.glob("lo_*.pcapng"))):
            time.sleep(0.02)
        time.sleep(0.5)  # let some datagrams through
        signal.pthread_kill(main, signal.SIGINT)

    with UdpSender() as sender:
        killer = threading.Thread(target=interrupt_once_capturing, daemon=True)
        killer.start()
        t0 = time.monotonic()
        files = capture_live("lo", spool, duration=60, bpf=f"udp dst port {sender.port}")
        elapsed = time.monotonic() - t0
        killer.join(5)
    assert elapsed < 30, "Ctrl-C did not stop the capture"
    table = _read_files(files)
    assert table.num_rows > 0
    assert set(table["dst_port"].to_pylist()) == {sender.port}


def test_needs_a_stop_condition(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="stop condition"):
        capture_live("lo", tmp_path)
    with pytest.raises(ConfigError):
        capture_live("lo", tmp_path, count=0)


@needs_dumpcap
def test_unknown_interface(tmp_path: Path) -> None:
    assert "lo" in list_interfaces()
    with pytest.raises(InputNotFoundError, match="no capture interface named 'nosuch0'"):
        capture_live("nosuch0", tmp_path, count=1)


def test_dumpcap_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ToolMissingError, match="apt-get install"):
        capture_live("lo", tmp_path, count=1)
    with pytest.raises(ToolMissingError):
        list_interfaces()


def test_permission_denied_says_what_to_do() -> None:
    stderr = (
        "Capturing on 'Loopback: lo'\n"
        'dumpcap: You do not have permission to capture on device "lo".\n'
        "(socket: Operation not permitted)\n"
    )
    err = _classify(stderr, 1, iface="lo", bpf=None, dumpcap="/usr/bin/dumpcap")
    assert isinstance(err, CapturePermissionError)
    assert "root" in str(err) and "setcap cap_net_raw,cap_net_admin=eip /usr/bin/dumpcap" in str(err)
    assert "\n" not in str(err)


@needs_root
def test_bad_capture_filter(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="capture filter"):
        capture_live("lo", tmp_path, count=1, duration=5, bpf="not a ( filter")
