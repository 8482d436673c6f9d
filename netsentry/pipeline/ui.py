"""The MLflow UI on the tracking store training used: ``mlflow server`` as a child process group, kept small.

``mlflow server``'s defaults spawn 15 processes (~3 GB RSS); one uvicorn worker and no job runner make it two
processes (~0.5 GB). Experiments created by netsentry carry ``file://`` artifact locations in the workspace,
which the server reads directly; ``--artifacts-destination`` keeps anything created through the UI in the
workspace too. This module does not import mlflow: it runs the venv's ``python -m mlflow server``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO

from netsentry.pipeline.core.errors import ConfigError, InputNotFoundError, UiError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
"""Set for the server on top of this process's environment: no job-runner processes, no telemetry."""
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
_ANY = ("0.0.0.0", "::", "[::]")


def remote_ui_url(tracking_uri: str) -> str | None:
    """The URL to open when the tracking store already is an MLflow server (http/https); None otherwise."""
    if tracking_uri.lower().startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return None


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _allowed_hosts(host: str, port: int) -> list[str]:
    """Host headers the server accepts: the loopback names (with and without the port) and the bound host."""
    names = list(_LOOPBACK)
    if _bracketed(host) not in names:
        names.append(_bracketed(host))
    return [h for name in names for h in (name, f"{name}:{port}")]


def ui_command(
    tracking_uri: str, workspace: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` argv (this interpreter's mlflow) and its environment (ours plus :data:`SERVER_ENV`).

    Raises :class:`UiError` when the tracking store is itself a server (see :func:`remote_ui_url`).
    """
    if url := remote_ui_url(tracking_uri):
        raise UiError(f"the tracking store is a server: open {url}")
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {port}")
    argv = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", tracking_uri,
        "--serve-artifacts", "--artifacts-destination", (Path(workspace).resolve() / "mlartifacts").as_uri(),
        "--host", host, "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    if host not in _ANY:  # bound to every interface: keep MLflow's default (loopback and private addresses)
        argv += ["--allowed-hosts", ",".join(_allowed_hosts(host, port))]
    return argv, {**os.environ, **SERVER_ENV}


def _sqlite_path(uri: str) -> Path | None:
    rest = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
    return Path(rest) if rest and rest != ":memory:" else None


def _check_port_free(host: str, port: int) -> None:
    """Bind the port the way uvicorn will (SO_REUSEADDR), so a taken port fails now and clearly."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.create_server((host.strip("[]"), port), family=family):
            pass
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UiError(
                f"port {port} on {host} is already in use (another MLflow UI?); choose another with --port"
            ) from None
        raise UiError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """State, parent pid and process group of a Linux process (None when gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def _alive(pid: int) -> bool:
    st = _proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def _live_tree(root: int, pgid: int) -> list[int]:
    """Living (not zombie) processes of the server: its process group and the root's descendants."""
    if not Path("/proc/self/stat").exists():  # not Linux: the group is alive while signal 0 reaches it
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    stats = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (st := _proc_stat(int(entry.name))) is not None:
            stats[int(entry.name)] = st
    tree = {root} | {pid for pid, (_, _, group) in stats.items() if group == pgid}
    grew = True
    while grew:
        more = {pid for pid, (_, ppid, _) in stats.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    return sorted(pid for pid in tree if pid in stats and stats[pid][0] not in ("Z", "X"))


class UiServer:
    """A running ``mlflow server``: its process (leader of its own process group), URL and log."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, argv: list[str], logfile: IO[bytes]) -> None:
        self.process = process
        self.url = url
        self.argv = argv
        self._log = logfile
        self._stopped = False

    @property
    def pid(self) -> int:
        """Process id of the server (and id of its process group)."""
        return self.process.pid

    def pids(self) -> list[int]:
        """Every living process of the server's tree."""
        return _live_tree(self.pid, self.pid)

    def log_lines(self) -> list[str]:
        """The server's output so far (stdout and stderr), one string a line."""
        self._log.flush()
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").splitlines()
        self._log.seek(0, os.SEEK_END)
        return lines

    def last_error_line(self) -> str:
        """The most telling line of the server's output: the last ERROR/Error line, else the last line."""
        lines = [line.strip() for line in self.log_lines() if line.strip()]
        for line in reversed(lines):
            if "ERROR" in line or "Error" in line:
                return line
        return lines[-1] if lines else "(no output)"

    def wait(self) -> int:
        """Block until the server exits; its exit code."""
        return self.process.wait()

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM to the process group, wait for the whole tree; SIGKILL what is left after ``grace_s``."""
        if self._stopped:
            return
        tree = set(self.pids())
        self._signal(signal.SIGTERM, tree)
        if not self._wait_gone(tree, grace_s):
            log.warning("MLflow UI (pid %d) still running %.0f s after SIGTERM; killing it", self.pid, grace_s)
            self._signal(signal.SIGKILL, tree)
            self._wait_gone(tree, 5.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=1)
        self._log.close()
        self._stopped = True

    def _signal(self, sig: signal.Signals, tree: set[int]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
        for pid in tree:  # descendants that left the group, if any (a second SIGTERM makes uvicorn hurry)
            if (st := _proc_stat(pid)) is not None and st[2] != self.pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)

    def _wait_gone(self, tree: set[int], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            self.process.poll()  # reap our child so it does not linger as a zombie
            if not set(self.pids()) | {pid for pid in tree if _alive(pid)}:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def __enter__(self) -> UiServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _get(url: str, timeout_s: float) -> int:
    """HTTP status of a GET (0 when nothing answered)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, OSError):
        return 0


def _wait_ready(server: UiServer, timeout_s: float) -> None:
    """Until the server answers ``/health`` and lists experiments; typed error if it exits or stays silent."""
    deadline = time.monotonic() + timeout_s
    health, probe = f"{server.url}/health", f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    while True:
        code = server.process.poll()
        if code is not None:
            raise UiError(f"MLflow UI exited before it was ready (exit code {code}): {server.last_error_line()}")
        if _get(health, 2.0) == 200:
            status = _get(probe, 10.0)
            if status == 200:
                return
            raise UiError(f"MLflow UI at {server.url} answers {status} to an experiment search: "
                          f"{server.last_error_line()}")  # fmt: skip
        if time.monotonic() > deadline:
            raise UiError(f"MLflow UI did not answer at {server.url} within {timeout_s:.0f} s: "
                          f"{server.last_error_line()}")  # fmt: skip
        time.sleep(0.25)


def start_ui(
    tracking_uri: str,
    workspace: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    timeout_s: float = READY_TIMEOUT_S,
    log_path: Path | None = None,
) -> UiServer:
    """Start the MLflow UI on a tracking store and return once it answers (its output goes to ``log_path``,
    else to an anonymous temporary file). Raises :class:`UiError` (port taken, early exit, no answer) and
    :class:`InputNotFoundError` when a SQLite store does not exist yet."""
    argv, env = ui_command(tracking_uri, workspace, host, port)
    db = _sqlite_path(tracking_uri)
    if db is not None and not db.exists():
        raise InputNotFoundError("no MLflow store yet: train a model first, or pass --tracking-uri", path=str(db))
    _check_port_free(host, port)
    logfile: IO[bytes] = open(log_path, "w+b") if log_path else tempfile.TemporaryFile()  # noqa: SIM115
    try:
        process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True
        )
    except OSError as e:
        logfile.close()
        raise UiError(f"cannot start the MLflow UI ({argv[0]}): {e}") from None
    url_host = DEFAULT_HOST if host in _ANY else _bracketed(host)
    server = UiServer(process, f"http://{url_host}:{port}", argv, logfile)
    log.info("MLflow UI starting (pid %d): %s", process.pid, " ".join(argv))
    try:
        _wait_ready(server, timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """In the main thread, SIGTERM raises KeyboardInterrupt (so the UI is stopped the same way as on Ctrl-C)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_forever(
    tracking_uri: str,
    workspace: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    on_ready: Callable[[UiServer], None] | None = None,
    timeout_s: float = READY_TIMEOUT_S,
    log_path: Path | None = None,
) -> None:
    """Start the UI, call ``on_ready`` (e.g. print the URL), run until Ctrl-C or SIGTERM, then stop it cleanly.

    Raises :class:`UiError` if the server exits on its own.
    """
    with _sigterm_as_interrupt():
        server = start_ui(tracking_uri, workspace, host, port, timeout_s=timeout_s, log_path=log_path)
        try:
            if on_ready is not None:
                on_ready(server)
            code = server.wait()
            raise UiError(f"MLflow UI exited (exit code {code}): {server.last_error_line()}")
        except KeyboardInterrupt:
            log.info("stopping the MLflow UI (pid %d)", server.pid)
        finally:
            server.stop()
