"""``load``: a Locust scenario headless against the configured cluster, the running stack, or one of its own."""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..dag.spec import Dag
from ..settings import Settings
from .context import emit_json, err, out, stop_on_sigterm, temporary_stack


def load(
    name: Annotated[str, typer.Argument(metavar="SCENARIO", help="steady, spike, stress or soak.")],
    scale: Annotated[
        float,
        typer.Option(
            help="Multiply the durations (and the stress scenario's runs in flight) by this; e.g. 0.05 for CI."
        ),
    ] = 1.0,
    dag_file: Annotated[
        Path | None, typer.Option("--dag", help="YAML or JSON DAG to submit (default: a diamond).")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Processes of the local worker pool (embedded only).")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Run a Locust scenario headless against the embedded stack or the configured cluster.

    Locust's CSV and HTML reports go under CODITECT_HOME/load/. Exit code 1 if any run failed.
    """
    from ..embedded import attach
    from ..load import runner
    from ..load.report import read_failures, read_stats
    from ..load.scenario import default_dag, scenario

    plan = scenario(name, scale)
    config = Settings.from_env()
    dag = Dag.load(dag_file, max_bytes=config.max_dag_bytes) if dag_file else default_dag()
    runner.validate_dag(dag, config)
    target = attach(config)
    out_dir = config.home / "load" / f"{plan.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    stop_on_sigterm()
    with contextlib.ExitStack() as cleanup:
        if target.embedded:  # nothing configured and no `up` running: bring our own stack
            agents = sorted({node.agent for node in dag.nodes.values()})
            stack = cleanup.enter_context(
                temporary_stack(config, agents, "load", workers=1, concurrency=concurrency, recorder=True)
            )
            target = stack.settings
        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, disable=as_json) as progress:
            bar = progress.add_task(f"{plan.name}: {plan.summary} (×{scale:g})", total=plan.seconds)
            outcome = runner.run(
                target,
                plan,
                scale,
                dag_file,
                out_dir,
                on_tick=lambda elapsed: progress.update(bar, completed=min(elapsed, plan.seconds)),
            )
    figures = read_stats(outcome.prefix)
    failures = read_failures(outcome.prefix)
    report = {
        "scenario": plan.name,
        "scale": scale,
        "dag": dag.name,
        "seconds": plan.seconds,
        **{kind: f.to_json() for kind, f in figures.items()},
        "failures": failures,
        "reports": {"csv": str(outcome.prefix) + "_stats.csv", "html": str(outcome.html), "log": str(outcome.log)},
    }
    failed = sum(f.failures for f in figures.values()) > 0 or outcome.exit_code != 0
    if as_json:
        emit_json(report)
    else:
        view = Table(title=f"{plan.name} ×{scale:g}: {dag.name} ({len(dag.nodes)} nodes), times in ms")
        for column in ("request", "count", "failed", "per s", "p50", "p95", "p99", "max"):
            view.add_column(column, justify="left" if column == "request" else "right")
        for kind, f in figures.items():
            view.add_row(
                kind,
                str(f.requests),
                str(f.failures),
                f"{f.per_second:g}",
                f"{f.p50:g}",
                f"{f.p95:g}",
                f"{f.p99:g}",
                f"{f.max:g}",
            )
        out.print(view)
        for failure in failures:
            out.print(f"[red]{failure['occurrences']}×[/red] {failure['error']}", markup=True, highlight=False)
        out.print(f"reports: {outcome.html} and {outcome.prefix}_*.csv")
    if failed:
        raise typer.Exit(1)
