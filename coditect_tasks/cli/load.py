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
    rate: Annotated[
        float | None, typer.Option(help="Runs per second of steady or soak (default 10 and 50): open-loop arrivals.")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Processes of the local worker pool (embedded only).")] = 2,
    compare: Annotated[
        bool,
        typer.Option("--compare", help="Then run the same DAG as plain Celery canvas on the same stack; report both."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Run a Locust scenario headless against the embedded stack or the configured cluster.

    Locust's CSV and HTML reports go under CODITECT_HOME/load/. Exit code 1 if any run failed.
    """
    from ..connection import redis_client
    from ..embedded import attach
    from ..load import resources, runner
    from ..load.report import drift, read_failures, read_stats, write_comparison
    from ..load.scenario import default_dag, scenario

    plan = scenario(name, scale, rate)
    config = Settings.from_env()
    dag = Dag.load(dag_file, max_bytes=config.max_dag_bytes) if dag_file else default_dag()
    runner.validate_dag(dag, config)
    systems = ("coditect", "celery") if compare else ("coditect",)
    if compare:
        from ..load.canvas import check

        check(dag)
    target = attach(config)
    out_dir = config.home / "load" / f"{plan.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    stop_on_sigterm()
    with contextlib.ExitStack() as cleanup:
        if target.embedded:  # nothing configured and no `up` running: bring our own stack
            agents = sorted({node.agent for node in dag.nodes.values()})
            stack = cleanup.enter_context(
                temporary_stack(config, agents, "load", workers=1, concurrency=concurrency, services=("recorder",))
            )
            target = stack.settings
        client = cleanup.enter_context(redis_client(target.state_url))
        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        outcomes, samplers = {}, {}
        with Progress(*columns, console=err, disable=as_json) as progress:
            for system in systems:
                sampler = samplers[system] = resources.Sampler(client)
                label = f"{plan.name}: {plan.summary} (×{scale:g})" + (f", {system}" if compare else "")
                bar = progress.add_task(label, total=plan.seconds)

                def tick(elapsed: float, bar: Any = bar, sampler: Any = sampler) -> None:
                    progress.update(bar, completed=min(elapsed, plan.seconds))
                    sampler.tick(elapsed)

                where = out_dir / system if compare else out_dir
                outcomes[system] = runner.run(target, plan, scale, dag_file, where, on_tick=tick, system=system)
                sampler.samples.append(sampler.sample())
    outcome, sampler = outcomes["coditect"], samplers["coditect"]
    stats = {system: read_stats(o.prefix) for system, o in outcomes.items()}  # each system's CSV, read once
    figures = stats["coditect"]
    failures = read_failures(outcome.prefix)
    usage = _resources(sampler, outcome.prefix, out_dir, f"{plan.name} ×{scale:g}", config.live_retention)
    report: dict[str, Any] = {
        "scenario": plan.name,
        "scale": scale,
        "dag": dag.name,
        "seconds": plan.seconds,
        **{kind: f.to_json() for kind, f in figures.items()},
        "failures": failures,
        "resources": usage,
        "drift": {kind: drift(outcome.prefix, kind) for kind in figures},
        "reports": {"csv": str(outcome.prefix) + "_stats.csv", "html": str(outcome.html), "log": str(outcome.log)},
    }
    failed = bool(usage["growing"]) or any(
        o.exit_code != 0 or any(f.failures for f in stats[s].values()) for s, o in outcomes.items()
    )
    if compare:
        write_comparison(
            {s: o.prefix for s, o in outcomes.items()},
            f"{plan.name} ×{scale:g}: {dag.name}, coditect-tasks and plain Celery",
            out_dir / "compare.csv",
            out_dir / "compare.html",
        )
        report["compare"] = {s: {k: f.to_json() for k, f in by_kind.items()} for s, by_kind in stats.items()}
        report["reports"]["compare"] = str(out_dir / "compare.html")
    if as_json:
        emit_json(report)
    else:
        view = Table(title=f"{plan.name} ×{scale:g}: {dag.name} ({len(dag.nodes)} nodes), times in ms")
        for column in ("system", "request", "count", "failed", "per s", "p50", "p95", "p99", "max"):
            view.add_column(column, justify="left" if column in ("system", "request") else "right")
        for system, by_kind in stats.items():
            for kind, f in by_kind.items():
                view.add_row(
                    "coditect-tasks" if system == "coditect" else "plain Celery",
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
        for kind, moved in report["drift"].items():
            if moved:
                out.print(
                    f"{kind} p99: {moved['first_ms']:g} ms over the first {moved['window_s']} s, "
                    f"{moved['last_ms']:g} ms over the last ({moved['ratio']:g}×)"
                )
        for name in usage["growing"]:
            out.print(f"[red]{name} still grows in the second half[/red] (over {GROWTH_LIMIT:.0%})", markup=True)
        out.print(f"reports: {outcome.html}, {usage['plot']} and {usage['timeline']}")
        if compare:
            out.print(f"side by side: {out_dir / 'compare.html'} and {out_dir / 'compare.csv'}")
    if failed:
        raise typer.Exit(1)


#: Growth over the second half of a load run beyond which a resource is taken to leak.
GROWTH_LIMIT = 0.10


def _resources(sampler: Any, prefix: Path, out_dir: Path, title: str, retention: int) -> dict[str, Any]:
    """Write the timeline and the plot; judge growth once the run outlasts twice the retention
    window (before that, finished runs legitimately pile up in Redis)."""
    from ..load import resources

    samples = sampler.samples
    history = prefix.with_name(prefix.name + "_stats_history.csv")
    timeline, plot = out_dir / "timeline.csv", out_dir / "resources.html"
    resources.write_timeline(samples, history, timeline)
    resources.write_plot(samples, title, plot)
    judged = len(samples) > 1 and samples[-1].at - samples[0].at >= 2 * retention
    # Redis holds the runs of the last retention window: its level follows the achieved rate, so
    # it is judged per run held (a faster second half is not a leak); the workers' RSS as it is.
    held = resources.per_run_held(samples, history, retention) if retention else samples
    series = {"redis memory per run held": (held, "redis_bytes"), "worker RSS": (samples, "worker_rss")}
    rising = {name: resources.growth(values, field) for name, (values, field) in series.items()}
    rising["redis memory"] = resources.growth(samples, "redis_bytes")
    return {
        "samples": len(samples),
        "growth": {name: None if value is None else round(value, 4) for name, value in rising.items()},
        "judged": judged,
        "growing": [
            name
            for name, (values, field) in series.items()
            if judged and resources.still_rising(values, field, GROWTH_LIMIT)
        ],
        "timeline": str(timeline),
        "plot": str(plot),
    }
