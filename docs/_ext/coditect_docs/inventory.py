"""What the built site must name, derived from the code, and which of it a built site lacks.

Each kind lists its names and the reference page they belong on; ``missing`` reads that page's
HTML text. A name added to the code (a setting, a command, a metric) is expected by the next test
run without anyone listing it, so a generator that drops it fails the check.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import coditect_tasks
from coditect_tasks import errors
from coditect_tasks.settings import Settings

from . import cli_ref, http_ref, metrics_ref, settings_ref

#: The reference page (HTML, relative to the site) each kind of name must appear on.
PAGES = {
    "public names": "reference/python-api.html",
    "errors": "reference/exit-codes.html",
    "commands": "reference/cli.html",
    "options": "reference/cli.html",
    "settings": "reference/settings.html",
    "endpoints": "reference/http-api.html",
    "metrics": "reference/metrics.html",
    "alerts": "reference/metrics.html",
}


def public_names() -> list[str]:
    return list(coditect_tasks.__all__)


def error_names() -> list[str]:
    return [name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, Exception)]


def command_paths() -> list[str]:
    return [doc.path for doc in cli_ref.commands()]


def option_names() -> list[str]:
    """Every long option of every command (``--json``), once per command that has it."""
    found = []
    for doc in cli_ref.commands():
        for spelled, _ in doc.params:
            found += [word for word in re.split(r"[ ,/]+", spelled) if word.startswith("--")]
    return sorted(set(found))


def setting_names(cls: type[Any] = Settings) -> list[str]:
    return [doc.variable for doc in settings_ref.settings_docs(cls)]


def endpoint_names() -> list[str]:
    return [f"{method} {path}" for method, path, _ in http_ref.operations(http_ref.openapi())]


def metric_names() -> list[str]:
    return [doc.name for doc in metrics_ref.metric_docs()]


def alert_names() -> list[str]:
    return [doc.name for doc in metrics_ref.alert_docs()]


def expected(settings: type[Any] = Settings) -> dict[str, list[str]]:
    """Every kind of name the site must show, from the code as it is now."""
    return {
        "public names": public_names(),
        "errors": error_names(),
        "commands": command_paths(),
        "options": option_names(),
        "settings": setting_names(settings),
        "endpoints": endpoint_names(),
        "metrics": metric_names(),
        "alerts": alert_names(),
    }


def page_text(path: Path) -> str:
    """A built page's visible text, tags removed, whitespace collapsed."""
    text = re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8"))
    return " ".join(html.unescape(text).split())


def missing(site: Path, names: dict[str, Iterable[str]]) -> dict[str, list[str]]:
    """The names of each kind that their reference page in ``site`` does not show."""
    gaps = {}
    for kind, wanted in names.items():
        text = page_text(site / PAGES[kind])
        absent = [name for name in wanted if name not in text]
        if absent:
            gaps[kind] = absent
    return gaps
