"""What every ``netsentry`` command shares: the common options and the one place library errors become exit codes.

Library code raises typed :class:`~netsentry.pipeline.core.errors.NetsentryError`s; :func:`fail_cleanly` turns
them into a one-line message on stderr and the error's exit code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from netsentry.pipeline.cli_render import err
from netsentry.pipeline.core.errors import ConfigError, NetsentryError

F = TypeVar("F", bound=Callable[..., Any])

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help="Workspace directory holding the stage tables [default: ./workspace]."),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config layered over configs/default.yaml.")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Rerun even when inputs and config are unchanged.")]
KindOpt = Annotated[str, typer.Option(help="compromise or faults.")]
TrackingUriOpt = Annotated[
    str | None,
    typer.Option(help="MLflow tracking URI [default: $NETSENTRY_TRACKING_URI, else sqlite in the workspace]."),
]

FailOnOpt = Annotated[
    str | None,
    typer.Option(
        help="Exit code 3 only for a finding at or above this severity: high, medium or low [default: medium "
        "(inspect.fail_on)]. Lower findings stay in the report, the JSON and the terminal's count."
    ),
]


def checked_fail_on(value: str | None) -> str | None:
    """The --fail-on flag, checked before it reaches the settings (so the error names the flag, not a file)."""
    if value is not None and value not in ("high", "medium", "low"):
        raise ConfigError(f"--fail-on must be high, medium or low, got {value!r}")
    return value


def fail_cleanly(fn: F) -> F:
    """Turn library errors into one line on stderr and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NetsentryError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted; outputs of the interrupted stage were not replaced", highlight=False)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
