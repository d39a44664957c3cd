"""What every command shares: the two consoles, the settings, JSON output, Ctrl-C on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from rich.console import Console

from ..errors import ConfigError
from ..settings import Settings

if TYPE_CHECKING:
    from ..embedded import LocalStack

#: Results for people and ``--json`` documents go to stdout; progress, hints and errors to stderr.
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def settings() -> Settings:
    """Settings from the environment, attached to a running embedded stack if any."""
    from ..embedded import attach

    return attach(Settings.from_env())


def names(text: str, option: str) -> list[str]:
    """The comma-separated agent names of ``option``; at least one."""
    found = [n.strip() for n in text.split(",") if n.strip()]
    if not found:
        raise ConfigError(option, "needs at least one agent name")
    return found


def emit_json(data: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def stop_on_sigterm() -> None:
    """Make SIGTERM stop a long-running command the way Ctrl-C does, through its cleanup."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def clip(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def coloured(status: str) -> str:
    colours = {"succeeded": "green", "failed": "red", "running": "blue", "queued": "yellow", "cancelled": "magenta"}
    colour = {**colours, "waiting": "dark_orange"}.get(status, "dim")
    return f"[{colour}]{status}[/{colour}]"


@contextlib.contextmanager
def temporary_stack(
    base: Settings,
    agents: Sequence[str],
    label: str,
    workers: int = 1,
    concurrency: int = 2,
    services: Sequence[str] = (),
) -> Iterator[LocalStack]:
    """A local stack for this command alone, started under a spinner; stopped and removed on exit."""
    from ..embedded import LocalStack

    stop_on_sigterm()
    with LocalStack.temporary(
        base, agents, label, workers=workers, concurrency=concurrency, services=services
    ) as stack:
        parts = (["redis-server"] if base.embedded else []) + ([f"{workers} worker pool(s)"] if workers else [])
        with err.status(f"starting {' and '.join(parts) or 'the stack'}…"):
            stack.start()
        yield stack
