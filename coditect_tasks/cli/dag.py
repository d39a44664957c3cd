"""``dag``: validate, submit, follow, inspect, list, cancel and draw DAG runs."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..dag.spec import Dag
from ..settings import Settings
from ..status import TERMINAL
from .context import clip, coloured, emit_json, err, out, settings

if TYPE_CHECKING:
    from ..client import Client, DagRun
    from ..dag.plan import Plan

dag_cli = typer.Typer(help="Validate, submit, inspect and cancel DAG runs.", no_args_is_help=True)
EXIT_BY_STATUS = {"succeeded": 0, "running": 0, "failed": 1, "cancelled": 1}


def _client() -> Client:
    """The command's client (imported here: ``dag validate`` must not pay for Celery and Redis)."""
    from .. import broker
    from ..client import Client

    config = settings()
    broker.ping(config.state_url, config.connect_timeout)
    return Client(config)


def _load(path: Path | str) -> Dag:
    return Dag.load(path, max_bytes=Settings.from_env().max_dag_bytes)


def _validate(dag: Dag) -> Plan:
    from ..agents import load_agents
    from ..dag.plan import validate

    config = Settings.from_env()
    return validate(dag, load_agents(config.agent_modules), **config.dag_limits())


@dag_cli.command("validate")
def dag_validate(
    file: Annotated[Path, typer.Argument(help="YAML or JSON DAG file.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Check a DAG file without running it (exit 0 valid, 2 invalid)."""
    dag = _load(file)
    plan = _validate(dag)
    summary = {"file": str(file), "name": dag.name, "valid": True, "nodes": len(dag.nodes), "roots": plan.roots}
    if as_json:
        emit_json(summary)
    else:
        out.print(f"{file}: valid: {len(dag.nodes)} node(s), roots: {', '.join(plan.roots)}")


@dag_cli.command("submit")
def dag_submit(
    file: Annotated[Path, typer.Argument(help="YAML or JSON DAG file.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to end.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait at most.")] = None,
    priority: Annotated[
        int | None, typer.Option(min=0, max=9, help="0-9, higher first while workers are busy (default 5).")
    ] = None,
    fairness_key: Annotated[
        str | None, typer.Option(help="A tenant or user: keys of one priority are served round robin.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Validate and start a run; with --wait, follow it to the end."""
    dag = _load(file)
    run = _client().submit(dag, priority=priority, fairness_key=fairness_key)
    if not wait:
        _started(run, as_json)
        return
    if as_json:
        run.wait(timeout)
    else:
        err.print(f"run {run.id} ({dag.name}) submitted")
        _follow(run, len(dag.nodes), timeout)
    _finish(run.status(), as_json)


def _started(run: DagRun, as_json: bool) -> None:
    """A run started without --wait: its document for machines, its id for people."""
    if as_json:
        emit_json(run.status())
    else:
        out.print(run.id)


def _follow(run: DagRun, total: int, timeout: float | None) -> None:
    """A live progress bar of terminal nodes, refreshed ten times a second."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    deadline = None if timeout is None else time.monotonic() + timeout
    with Progress(*columns, console=err) as progress:
        bar = progress.add_task("nodes", total=total)
        while True:
            done, state = run.progress()
            progress.update(bar, completed=done, description=f"nodes ({state})")
            if state in TERMINAL or (deadline is not None and time.monotonic() > deadline):
                return
            run.wait(0.1)


def _finish(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(doc)
    else:
        _print_run(doc)
    code = EXIT_BY_STATUS.get(doc["status"], 1)
    if code:
        raise typer.Exit(code)


def _waiting_for(node: dict[str, Any]) -> str:
    """What a waiting node (no agent) waits for, in the agent column."""
    if awaits := node.get("awaits"):
        return f"(event {awaits['event']}{' ' + awaits['key'] if awaits['key'] else ''})"
    return f"({node.get('kind') or 'wait'})"


def _print_run(doc: dict[str, Any]) -> None:
    view = Table(title=f"run {doc['run_id']} ({doc['name']}): {doc['status']}")
    for column in ("node", "agent", "status", "attempts", "seconds", "worker", "result / error"):
        view.add_column(column, justify="right" if column in ("attempts", "seconds") else "left")
    for nid, node in doc["nodes"].items():
        seconds = _seconds(node["started_at"], node["finished_at"])
        detail = node["error"] if node["status"] == "failed" else json.dumps(node["result"])
        view.add_row(
            nid,
            node["agent"] or _waiting_for(node),
            coloured(node["status"]),
            str(node["attempts"]),
            f"{seconds:.3f}" if seconds is not None else "-",
            node["worker"] or "-",
            clip(str(detail), 50),
        )
    out.print(view)
    if doc.get("parent_node"):
        out.print(f"spawned by node {doc['parent_node']} of run {doc['parent_run_id']}")
    for nid, node in doc["nodes"].items():
        if node.get("children"):
            out.print(f"{nid} spawned: {', '.join(node['children'])}")
    for warning in doc["warnings"]:
        err.print(f"[yellow]warning:[/yellow] {warning}")


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


@dag_cli.command("status")
def dag_status(
    run_id: Annotated[str, typer.Argument(help="Run id from `dag submit`.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Show a run and its nodes (from the live state, else from the history)."""
    _finish(_client().get(run_id).status(), as_json)


@dag_cli.command("list")
def dag_list(
    limit: Annotated[int, typer.Option(min=1, help="How many runs, newest first.")] = 20,
    status: Annotated[str | None, typer.Option(help="Only runs in this state.")] = None,
    name: Annotated[str | None, typer.Option(help="Only runs of this name.")] = None,
    search: Annotated[
        str | None, typer.Option(help="Only runs whose id starts with it or whose name holds it.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Only runs submitted at or after this ISO-8601 time.")] = None,
    until: Annotated[str | None, typer.Option(help="Only runs submitted before this ISO-8601 time.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """List recent runs (live and recorded), filtered as the console's runs page filters them."""
    runs = _client().runs(status, limit, name=name, search=search, since=since, until=until)
    if as_json:
        emit_json({"runs": runs})
        return
    view = Table(title="runs")
    for column in ("run id", "name", "status", "submitted", "finished"):
        view.add_column(column)
    for r in runs:
        view.add_row(
            r["run_id"], r["name"] or "-", coloured(r["status"]), r["submitted_at"] or "-", r["finished_at"] or "-"
        )
    out.print(view)


@dag_cli.command("cancel")
def dag_cancel(run_id: Annotated[str, typer.Argument(help="Run id.")]) -> None:
    """Cancel a run: start nothing new, revoke what is queued; it ends cancelled."""
    run = _client().get(run_id)
    if run.cancel():
        out.print(f"run {run_id} cancelled")
        return
    state = run.state()
    err.print(f"run {run_id} is already {state}; nothing to cancel")
    raise typer.Exit(1)


@dag_cli.command("approve")
def dag_approve(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    node: Annotated[str, typer.Argument(help="The approval node.")],
    reject: Annotated[bool, typer.Option("--reject", help="Reject: the node fails.")] = False,
    comment: Annotated[str, typer.Option(help="Why: kept with the decision.")] = "",
    by: Annotated[str | None, typer.Option("--as", help="Who decides (default: $USER).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Approve (or reject) a waiting approval node."""
    identity = by or os.environ.get("USER") or "cli"
    taken = _client().get(run_id).approve(node, by=identity, comment=comment, reject=reject)
    if as_json:
        emit_json(taken)
    else:
        out.print(f"{node}: {taken['status']} ({taken['approvals']} of {taken['needed']} approval(s))")


@dag_cli.command("retry")
def dag_retry(
    run_id: Annotated[str, typer.Argument(help="A failed or cancelled run.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the new run to end.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Run a failed or cancelled run again as a new run: its succeeded nodes keep their results."""
    run = _client().get(run_id).retry()
    if not wait:
        _started(run, as_json)
        return
    err.print(f"run {run.id} retries {run_id}")
    run.wait()
    _finish(run.status(), as_json)


@dag_cli.command("events")
def dag_events(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    after: Annotated[str | None, typer.Option(help="Start after this event id (as SSE's Last-Event-ID).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line (JSON Lines).")] = False,
) -> None:
    """Print the run's transitions from its start, then live, until it ends."""
    run = _client().get(run_id)  # RunNotFoundError before anything is printed
    for event in run.events(after):
        if as_json:
            sys.stdout.write(json.dumps(event.to_json()) + "\n")
            sys.stdout.flush()
            continue
        fields = (
            ("attempt", event.attempt),
            ("worker", event.worker),
            ("error", event.error),
            *(event.detail or {}).items(),
        )
        detail = " ".join(f"{k}={v}" for k, v in fields if v)
        out.print(f"{event.ts}  {event.node or '(run)'}  {coloured(event.status)}  {clip(detail, 80)}")


@dag_cli.command("graph")
def dag_graph(target: Annotated[str, typer.Argument(help="A DAG file, or a run id (states coloured).")]) -> None:
    """Print the DAG as a Mermaid flowchart."""
    from ..dag.graph import mermaid

    if Path(target).exists():
        dag = _load(target)
        _validate(dag)
        sys.stdout.write(mermaid(dag.to_json()))
        return
    run = _client().get(target)
    doc = run.status()
    sys.stdout.write(mermaid(run.definition(), {nid: n["status"] for nid, n in doc["nodes"].items()}))
