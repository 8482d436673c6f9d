"""Live capture: ``dumpcap`` (the capture engine behind tshark and pyshark) writes a pcapng ring
buffer into a spool directory; the fast reader (:func:`netsentry.pipeline.capture.reader.read_packets`) then
reads the files. No Python object is built per packet.
"""

from __future__ import annotations

import logging
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from netsentry.pipeline.core.errors import (
    CapturePermissionError,
    ConfigError,
    InputNotFoundError,
    NetsentryError,
    ToolMissingError,
)

log = logging.getLogger(__name__)

INSTALL_HINT = "dumpcap is not installed; install it with `apt-get install tshark` (it ships dumpcap)"
STOP_TIMEOUT_S = 10.0


def _dumpcap() -> str:
    path = shutil.which("dumpcap")
    if path is None:
        raise ToolMissingError(INSTALL_HINT)
    return path


def _first_error(stderr: str) -> str:
    """dumpcap's one-line reason (``dumpcap: There is no device named "x".`` → the sentence)."""
    for line in stderr.splitlines():
        if line.startswith("dumpcap: "):
            return line.removeprefix("dumpcap: ").strip()
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("Capturing on")]
    return lines[0] if lines else "no message"


def _classify(stderr: str, returncode: int, *, iface: str, bpf: str | None, dumpcap: str) -> NetsentryError:
    """Turn a failed dumpcap run into one typed, one-line error."""
    reason = _first_error(stderr)
    low = stderr.lower()
    if "permission" in low or "operation not permitted" in low:
        return CapturePermissionError(
            f"not permitted to capture on {iface!r}: run as root or grant dumpcap the capture capabilities "
            f"with `setcap cap_net_raw,cap_net_admin=eip {dumpcap}`"
        )
    if "no device named" in low or "no such device" in low:
        return InputNotFoundError(f"no capture interface named {iface!r} ({reason})")
    if "capture filter" in low:
        return ConfigError(f"invalid capture filter {bpf!r} for {iface!r}: {reason}")
    return NetsentryError(f"dumpcap failed on {iface!r} (exit status {returncode}): {reason}")


def list_interfaces() -> list[str]:
    """Names of the interfaces dumpcap can capture on (``dumpcap -D``), in its order."""
    dumpcap = _dumpcap()
    res = subprocess.run([dumpcap, "-D"], capture_output=True, text=True, timeout=60, check=False)
    if res.returncode != 0:
        raise _classify(res.stderr, res.returncode, iface="(listing interfaces)", bpf=None, dumpcap=dumpcap)
    names = []
    for line in res.stdout.splitlines():
        m = re.match(r"\s*\d+\.\s+(\S+)", line)
        if m:
            names.append(m.group(1))
    return names


def _ring_files(spool_dir: Path, stem: str) -> list[Path]:
    """Files dumpcap wrote from the ``<stem>.pcapng`` template (``<stem>_00001_<time>.pcapng``), in order."""
    pat = re.compile(rf"^{re.escape(stem)}_(\d+)_(\d{{14}})\.pcapng$")
    found = []
    for p in spool_dir.iterdir():
        m = pat.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), m.group(2), p))
    return [p for _, _, p in sorted(found)]


def _stop(proc: subprocess.Popen[bytes]) -> bytes:
    """Stop dumpcap the way Ctrl-C does (it closes its file cleanly), escalating if it hangs."""
    err = b""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        try:
            _, more = proc.communicate(timeout=STOP_TIMEOUT_S)
            err += more or b""
            break
        except subprocess.TimeoutExpired:
            log.warning("dumpcap (pid %d) did not stop on %s", proc.pid, sig.name)
    return err


def _num_arg(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".")


def check_stop_condition(duration: float | None, count: int | None) -> None:
    """A live capture needs a positive duration or packet count (ConfigError otherwise)."""
    if duration is None and count is None:
        raise ConfigError("live capture needs a stop condition: give a duration or a packet count")
    if duration is not None and duration <= 0:
        raise ConfigError(f"capture duration must be positive, got {duration}")
    if count is not None and count <= 0:
        raise ConfigError(f"capture packet count must be positive, got {count}")


def capture_live(
    iface: str,
    spool_dir: Path,
    *,
    duration: float | None = None,
    count: int | None = None,
    ring_file_mb: int = 100,
    ring_files: int = 0,
    bpf: str | None = None,
    snaplen: int = 0,
) -> list[Path]:
    """Capture on ``iface`` into a pcapng ring buffer in ``spool_dir``; return the files, oldest first.

    Stops after ``duration`` seconds or ``count`` packets (at least one is required). Each file holds
    up to ``ring_file_mb`` MB; with ``ring_files > 0`` only the newest ``ring_files`` are kept. ``bpf``
    is a libpcap capture filter, ``snaplen`` the bytes kept per packet (0: dumpcap's default).
    Ctrl-C stops the capture cleanly and returns the files written so far.
    """
    check_stop_condition(duration, count)
    if ring_file_mb < 1 or ring_files < 0 or snaplen < 0:
        raise ConfigError(
            f"invalid capture options: ring_file_mb={ring_file_mb} (>= 1), ring_files={ring_files} (>= 0), "
            f"snaplen={snaplen} (>= 0)"
        )
    dumpcap = _dumpcap()
    names = list_interfaces()
    if iface not in names and not (iface.isdigit() and 1 <= int(iface) <= len(names)):
        available = ", ".join(names) or "none"
        raise InputNotFoundError(f"no capture interface named {iface!r}; available: {available}")

    spool_dir = Path(spool_dir)
    spool_dir.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9.-]", "-", iface)
    before = set(_ring_files(spool_dir, stem))
    template = spool_dir / f"{stem}.pcapng"
    cmd = [dumpcap, "-i", iface, "-n", "-w", str(template), "-b", f"filesize:{ring_file_mb * 1000}"]
    if ring_files:
        cmd += ["-b", f"files:{ring_files}"]
    if duration is not None:
        cmd += ["-a", f"duration:{_num_arg(duration)}"]
    if count is not None:
        cmd += ["-c", str(count)]
    if bpf:
        cmd += ["-f", bpf]
    if snaplen:
        cmd += ["-s", str(snaplen)]
    log.info("capturing on %s into %s: %s", iface, spool_dir, " ".join(cmd[1:]))

    t0 = time.monotonic()
    # Own session: a terminal's Ctrl-C reaches only us, and we stop dumpcap deliberately.
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    interrupted = False
    try:
        _, err_bytes = proc.communicate()
    except KeyboardInterrupt:
        interrupted = True
        err_bytes = _stop(proc)
    except BaseException:
        _stop(proc)
        raise
    stderr = (err_bytes or b"").decode(errors="replace")
    files = [p for p in _ring_files(spool_dir, stem) if p not in before]
    if interrupted:
        log.warning("capture on %s interrupted after %.1f s; keeping the %d file(s) written so far",
                    iface, time.monotonic() - t0, len(files))  # fmt: skip
        return files
    if proc.returncode != 0:
        raise _classify(stderr, proc.returncode, iface=iface, bpf=bpf, dumpcap=dumpcap)
    summary = [ln.strip() for ln in stderr.splitlines() if ln.startswith(("Packets captured", "Packets rec"))]
    log.info("capture on %s done in %.1f s: %s; %d file(s)", iface, time.monotonic() - t0,
             "; ".join(summary) or "no summary", len(files))  # fmt: skip
    return files
