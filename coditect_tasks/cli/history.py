"""``history``: keep the run history bounded."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from ..settings import safe_url
from .context import emit_json, out, settings

history_cli = typer.Typer(help="Manage the durable run history.", no_args_is_help=True)

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m`` or ``3600s``."""
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not match:
        raise typer.BadParameter(f"{text!r} is not an age such as 30d, 12h, 90m or 3600s")
    return timedelta(seconds=int(match[1]) * UNITS[match[2]])


@history_cli.command("prune")
def prune(
    older_than: Annotated[
        timedelta, typer.Option("--older-than", parser=_age, help="Delete runs that finished longer ago, e.g. 30d.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Delete finished runs older than an age from the history database (runs still going stay)."""
    from ..history.store import HistoryStore

    config = settings()
    cutoff = (datetime.now(UTC) - older_than).isoformat(timespec="microseconds")
    started = time.perf_counter()
    store = HistoryStore.from_settings(config)
    try:
        deleted = store.prune(cutoff)
    finally:
        store.close()
    seconds = time.perf_counter() - started
    if as_json:
        emit_json({"deleted_runs": deleted, "finished_before": cutoff, "seconds": round(seconds, 3)})
    else:
        out.print(
            f"deleted {deleted} run(s) finished before {cutoff} from {safe_url(config.history_url)} in {seconds:.2f} s"
        )
