"""``netsentry models``: the registry's versions per kind (list, promote, rollback)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from netsentry.pipeline import cli_render as render
from netsentry.pipeline.cli_options import ConfigOpt, KindOpt, TrackingUriOpt, WorkspaceOpt, fail_cleanly
from netsentry.pipeline.cli_render import out
from netsentry.pipeline.core.errors import ConfigError

models_app = typer.Typer(
    help="The registry's versions per kind: list them, promote one to champion, roll back to the previous one.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _tracker(workspace: Path | None, config: Path | None, tracking_uri: str | None) -> Any:
    from netsentry.pipeline.core.config import load_settings
    from netsentry.pipeline.core.tracking import Tracker

    settings = load_settings(config, {"workspace": workspace, "train": {"tracking_uri": tracking_uri}})
    return Tracker(settings.workspace, settings.train.tracking_uri)


def _kind(kind: str) -> str:
    if kind not in ("compromise", "faults"):
        raise ConfigError(f"--kind must be compromise or faults, got {kind!r}")
    return kind


@models_app.command("list")
@fail_cleanly
def models_list(
    kind: Annotated[str | None, typer.Option(help="compromise or faults [default: both].")] = None,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Every registered version with its aliases, training metrics and promotion record."""
    tracker = _tracker(workspace, config, tracking_uri)
    for k in [_kind(kind)] if kind else ["compromise", "faults"]:
        render.print_model_versions(tracker, k)


@models_app.command("promote")
@fail_cleanly
def models_promote(
    version: Annotated[str, typer.Argument(help="The version to make champion.")],
    kind: KindOpt = "compromise",
    reason: Annotated[str, typer.Option(help="Why (recorded on the version).")] = "manual promotion",
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Make VERSION the champion (the one it replaces is recorded for rollback)."""
    p = _tracker(workspace, config, tracking_uri).promote(_kind(kind), version, reason)
    was = f" (was v{p.previous})" if p.previous and p.previous != p.version else ""
    out.print(f"netsentry-{kind}: champion is v{p.version}{was}", highlight=False)


@models_app.command("rollback")
@fail_cleanly
def models_rollback(
    kind: KindOpt = "compromise",
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Move champion back to the version the current champion replaced."""
    p = _tracker(workspace, config, tracking_uri).rollback(_kind(kind))
    out.print(f"netsentry-{kind}: champion is v{p.version} again (rolled back from v{p.previous})", highlight=False)
