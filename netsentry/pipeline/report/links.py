"""Links into the MLflow UI, built only from an http(s) ``mlflow_ui_url``; ids are percent-encoded."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from netsentry.pipeline.report.markup import esc


def ui_base(meta: dict[str, Any]) -> str | None:
    """The UI's base URL without a trailing slash, or None when unset or not http(s)."""
    url = meta.get("mlflow_ui_url")
    if not isinstance(url, str) or not url.strip():
        return None
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c in url for c in "\"'<> \n\t"):
        return None
    return url


def _path_part(x: Any) -> str:
    """One URL path segment, every reserved character escaped."""
    return quote(str(x), safe="")


def run_url(ui: str | None, experiment_id: Any, run_id: Any) -> str | None:
    """``{ui}/#/experiments/{experiment_id}/runs/{run_id}``, or None when anything is missing."""
    if not ui or experiment_id in (None, "") or run_id in (None, ""):
        return None
    return f"{ui}/#/experiments/{_path_part(experiment_id)}/runs/{_path_part(run_id)}"


def model_name(uri: Any) -> str | None:
    """The registered model's name in ``models:/name@alias`` or ``models:/name/version``."""
    if not isinstance(uri, str) or not uri.startswith("models:/"):
        return None
    name = uri[len("models:/") :].split("@", 1)[0].split("/", 1)[0]
    return name or None


def model_version_url(ui: str | None, name: str | None, version: Any) -> str | None:
    """``{ui}/#/models/{name}/versions/{version}``, or None when anything is missing."""
    if not ui or not name or version in (None, ""):
        return None
    return f"{ui}/#/models/{_path_part(name)}/versions/{_path_part(version)}"


def link(url: str | None, text: Any) -> str:
    """An ``<a>`` opening in a new tab when ``url`` is set, else the escaped text in ``<code>``."""
    if not url:
        return f"<code>{esc(text)}</code>"
    return f'<a href="{esc(url)}" target="_blank" rel="noopener noreferrer"><code>{esc(text)}</code></a>'
