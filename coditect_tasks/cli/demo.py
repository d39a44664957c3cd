"""``demo``: the first autonomous workflow on a stack of its own, with live progress."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..settings import Settings
from .context import clip, emit_json, err, out, temporary_stack


def demo(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
    items: Annotated[
        int | None, typer.Option(min=1, max=64, help="How many parallel review calls [default: one per built-in item].")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds the workflow may take.")] = 60.0,
) -> None:
    """Start a local stack, run plan → review ×N → summarize, show the results, stop."""
    from ..agents import load_agents, select
    from ..app import create_app
    from ..demo import DEFAULT_ITEMS

    config = Settings.from_env()
    select(load_agents(config.agent_modules), ["emit", "echo"])
    items = items or len(DEFAULT_ITEMS)
    work_items = [*DEFAULT_ITEMS, *(f"item-{i}" for i in range(len(DEFAULT_ITEMS), items))][:items]
    with temporary_stack(config, ["emit", "echo"], "demo", workers=2, concurrency=2) as stack:
        app = create_app(stack.settings)
        result = _run_with_progress(app, work_items, timeout, show=not as_json)
        result["workers"] = [w.hostname for w in stack.workers]
    if as_json:
        emit_json(result)
        return
    view = Table(title=result["workflow"])
    for column in ("step", "agent", "calls", "seconds", "result"):
        view.add_column(column, justify="right" if column in ("calls", "seconds") else "left")
    for step in result["steps"]:
        view.add_row(
            step["step"],
            step["agent"],
            str(step["calls"]),
            f"{step['seconds']:.3f}",
            clip(json.dumps(step["result"])),
        )
    out.print(view)
    out.print_json(data=result["result"])
    out.print(f"[green]succeeded[/green] in {result['seconds']:.2f} s across {', '.join(result['workers'])}")


def _run_with_progress(app: Any, items: Sequence[str], timeout: float, show: bool) -> dict[str, Any]:
    from ..demo import Step, run_workflow

    if not show:
        return run_workflow(app, items, timeout)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err) as progress:
        bars: dict[str, TaskID] = {
            "plan": progress.add_task("plan      (emit)", total=1),
            "review": progress.add_task(f"review ×{len(items)} (echo)", total=len(items)),
            "summarize": progress.add_task("summarize (echo)", total=1),
        }

        def update(step: Step) -> None:
            progress.update(bars[step.name], completed=step.done)

        return run_workflow(app, items, timeout, on_progress=update)
