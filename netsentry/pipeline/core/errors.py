"""Typed errors raised by library code; only the CLI turns them into exit codes."""

from __future__ import annotations


class NetsentryError(Exception):
    """Base class: a user-facing, one-line problem. ``exit_code`` is what the CLI returns."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class ConfigError(NetsentryError, ValueError):
    """A config file or option is invalid; also a ``ValueError``, as scikit-learn-style tooling expects."""

    exit_code = 2


class InputNotFoundError(NetsentryError):
    """A named input (file, directory, glob, workspace table) does not exist."""

    exit_code = 2


class CaptureFormatError(NetsentryError):
    """A file is not a capture we can read (bad magic, unknown link type, corrupt header)."""

    exit_code = 4


class NoUsableDataError(NetsentryError):
    """Every input was unreadable or empty: nothing usable came out of a stage."""

    exit_code = 4


class SchemaError(NetsentryError):
    """A table does not match its contract in ``netsentry.pipeline.core.schemas``."""

    exit_code = 5


class ToolMissingError(NetsentryError):
    """An external program (tshark, dumpcap) is needed but not installed."""

    exit_code = 6


class CapturePermissionError(NetsentryError):
    """Live capture is not permitted for this user (needs root or dumpcap capabilities)."""

    exit_code = 7


class TrackingError(NetsentryError):
    """The MLflow tracking store or registry could not be used (unreachable, refused, missing model)."""

    exit_code = 8


class UiError(NetsentryError):
    """The MLflow UI server could not be started (port in use, server exited or never answered)."""

    exit_code = 9


class LockHeldError(NetsentryError):
    """Another run holds the workspace's lock (e.g. two retraining jobs would overlap)."""

    exit_code = 10


class LabError(NetsentryError):
    """The lab cannot run here (not root, not Linux, a kernel feature missing) or a command it ran failed."""

    exit_code = 11
