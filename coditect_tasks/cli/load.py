"""``load``: a Locust scenario headless against the configured cluster, the running stack, or one of its own."""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

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
    from .. import broker
    from ..embedded import attach
    from ..load import resources, runner
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
        sampler = resources.Sampler(cleanup.enter_context(broker.redis_client(target.state_url)))
        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, disable=as_json) as progress:
            bar = progress.add_task(f"{plan.name}: {plan.summary} (×{scale:g})", total=plan.seconds)

            def tick(elapsed: float) -> None:
                progress.update(bar, completed=min(elapsed, plan.seconds))
                sampler.tick(elapsed)

            outcome = runner.run(target, plan, scale, dag_file, out_dir, on_tick=tick)
            sampler.samples.append(sampler.sample())
    figures = read_stats(outcome.prefix)
    failures = read_failures(outcome.prefix)
    usage = _resources(sampler, outcome.prefix, out_dir, f"{plan.name} ×{scale:g}", config.live_retention)
    report = {
        "scenario": plan.name,
        "scale": scale,
        "dag": dag.name,
        "seconds": plan.seconds,
        **{kind: f.to_json() for kind, f in figures.items()},
        "failures": failures,
        "resources": usage,
        "reports": {"csv": str(outcome.prefix) + "_stats.csv", "html": str(outcome.html), "log": str(outcome.log)},
    }
    failed = sum(f.failures for f in figures.values()) > 0 or outcome.exit_code != 0 or bool(usage["growing"])
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
        for name in usage["growing"]:
            out.print(f"[red]{name} still grows in the second half[/red] (over {GROWTH_LIMIT:.0%})", markup=True)
        out.print(f"reports: {outcome.html}, {usage['plot']} and {usage['timeline']}")
    if failed:
        raise typer.Exit(1)


#: Growth over the second half of a load run beyond which a resource is taken to leak.
GROWTH_LIMIT = 0.10


def _resources(sampler: Any, prefix: Path, out_dir: Path, title: str, retention: int) -> dict[str, Any]:
    """Write the timeline and the plot; judge growth once the run outlasts twice the retention
    window (before that, finished runs legitimately pile up in Redis)."""
    from ..load import resources

    samples = sampler.samples
    timeline, plot = out_dir / "timeline.csv", out_dir / "resources.html"
    resources.write_timeline(samples, prefix.with_name(prefix.name + "_stats_history.csv"), timeline)
    resources.write_plot(samples, title, plot)
    judged = len(samples) > 1 and samples[-1].at - samples[0].at >= 2 * retention
    rising = {name: resources.growth(samples, field) for name, field in GROWING.items()}
    return {
        "samples": len(samples),
        "growth": {name: None if value is None else round(value, 4) for name, value in rising.items()},
        "judged": judged,
        "growing": [
            name for name, field in GROWING.items() if judged and resources.still_rising(samples, field, GROWTH_LIMIT)
        ],
        "timeline": str(timeline),
        "plot": str(plot),
    }


#: Resources that must reach a plateau: report name → ``Sample`` field.
GROWING = {"redis memory": "redis_bytes", "worker RSS": "worker_rss"}
