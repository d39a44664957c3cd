"""The ``coditect-tasks`` command: workers, discovery, the local stack and the demo.

User errors (``CoditectError``) become one line on stderr and a non-zero exit
code; tracebacks are for bugs only. ``--json`` output is exactly one JSON
document on stdout, with anything for humans on stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import broker as broker_mod
from .agents import load_agents, select
from .app import CoditectApp, create_app
from .dag.graph import mermaid
from .dag.plan import Plan, validate
from .dag.run import TERMINAL, DagRun, list_runs, submit
from .dag.spec import Dag
from .demo import DEFAULT_ITEMS, Step, run_workflow
from .embedded import LocalStack, attach
from .errors import CoditectError, ConfigError
from .history.recorder import Recorder
from .history.store import HistoryStore
from .observability import signals as observability_signals
from .registry import Registry
from .resilience.breaker import breaker_states
from .settings import Settings, safe_url

cli = typer.Typer(
    name="coditect-tasks",
    help="Run software agents as Celery workers and orchestrate them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _settings() -> Settings:
    """Settings from the environment, attached to a running embedded stack if any."""
    return attach(Settings.from_env())


def _names(text: str, option: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(option, "needs at least one agent name")
    return names


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@cli.command()
def worker(
    agents: Annotated[str, typer.Option("--agents", "-a", help="Comma-separated agent names to serve.")],
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", help="Pool size (default: CPUs).")] = None,
    pool: Annotated[str, typer.Option("--pool", "-P", help="prefork, threads or solo.")] = "prefork",
    hostname: Annotated[str | None, typer.Option("--hostname", "-n", help="Unique worker name.")] = None,
    max_tasks_per_child: Annotated[int | None, typer.Option(help="Recycle a pool process after N calls.")] = None,
    events: Annotated[bool, typer.Option("--events/--no-events", "-E", help="Send task events (Flower).")] = False,
) -> None:
    """Run a worker pool in the foreground that consumes only these agents' queues."""
    if pool not in ("prefork", "threads", "solo"):
        raise ConfigError("--pool", f"{pool!r} is not one of prefork, threads, solo")
    settings = _settings()
    chosen = select(load_agents(settings.agent_modules), _names(agents, "--agents"))
    broker_mod.ping(settings.require_broker(), settings.connect_timeout)
    broker_mod.ping(settings.state_url, settings.connect_timeout)
    app = create_app(settings)
    observability_signals.install(settings.log_level, pool)
    argv = [
        "worker",
        "--queues", ",".join(a.queue for a in chosen),
        "--pool", pool,
        "--loglevel", settings.log_level,
        "--without-gossip",
        "--without-mingle",
    ]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if hostname:
        argv += ["--hostname", hostname]
    if max_tasks_per_child:
        argv += ["--max-tasks-per-child", str(max_tasks_per_child)]
    if events:
        argv.append("--task-events")
    app.worker_main(argv)


@cli.command("agents")
def agents_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Show every agent with its live workers and queue depth."""
    settings = _settings()
    declared = load_agents(settings.agent_modules)
    broker_url = settings.require_broker()
    broker_mod.ping(settings.state_url, settings.connect_timeout)
    registry = Registry.from_url(settings.state_url)
    table = registry.by_agent(declared)
    depths = broker_mod.queue_depths(broker_url, [f"agents.{name}" for name in table])
    breakers = breaker_states(registry.client, table)
    data: dict[str, dict[str, dict[str, Any]]] = {
        "agents": {
            name: {
                "queue": f"agents.{name}",
                "declared": name in declared,
                "workers": [w.to_json() for w in workers],
                "queue_depth": depths[f"agents.{name}"],
                "breaker": breakers[name],
            }
            for name, workers in table.items()
        }
    }
    if as_json:
        _emit_json(data)
        return
    view = Table(title=f"agents on {safe_url(broker_url)}")
    for column in ("agent", "queue", "workers", "slots", "queued", "breaker", "hosts"):
        view.add_column(column, justify="right" if column in ("workers", "slots", "queued") else "left")
    for name, info in data["agents"].items():
        workers = info["workers"]
        view.add_row(
            name,
            info["queue"],
            str(len(workers)) if workers else "[red]0[/red]",
            str(sum(w["concurrency"] for w in workers)),
            str(info["queue_depth"]),
            {"closed": "closed", "open": "[red]open[/red]"}.get(info["breaker"], f"[yellow]{info['breaker']}[/yellow]"),
            ", ".join(w["hostname"] for w in workers) or "-",
        )
    out.print(view)


@cli.command()
def up(
    workers: Annotated[int, typer.Option(min=0, help="Local worker pools to start.")] = 2,
    concurrency: Annotated[int, typer.Option(min=1, help="Processes per pool.")] = 2,
    agents: Annotated[str | None, typer.Option(help="Agents the pools serve (default: all).")] = None,
) -> None:
    """Start the local stack (embedded Redis unless configured, plus workers) until Ctrl-C."""
    settings = Settings.from_env()
    declared = load_agents(settings.agent_modules)
    names = _names(agents, "--agents") if agents else sorted(declared)
    select(declared, names)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    stack = LocalStack(settings, names, workers=workers, concurrency=concurrency, record=True, recorder=True)
    try:
        with err.status("starting the local stack…"):
            stack.start()
        err.print(f"[green]up[/green]: {len(stack.workers)} worker pool(s) serving {', '.join(names)}")
        err.print("reach it from another shell with:")
        for key, value in stack.settings.environment().items():
            out.print(f"export {key}={value}", soft_wrap=True)
        err.print("[dim]Ctrl-C or SIGTERM stops everything started here.[/dim]")
        while True:
            for proc in stack.workers:
                if not proc.alive():
                    err.print(f"[yellow]worker {proc.hostname} exited; see {proc.log_path}[/yellow]")
                    stack.workers.remove(proc)
            time.sleep(0.5)
    except KeyboardInterrupt:
        err.print("stopping…")
    finally:
        stack.stop()


@cli.command()
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
    items: Annotated[int, typer.Option(min=1, max=64, help="How many parallel review calls.")] = len(DEFAULT_ITEMS),
    timeout: Annotated[float, typer.Option(help="Seconds the workflow may take.")] = 60.0,
) -> None:
    """Start a local stack, run plan → review ×N → summarize, show the results, stop."""
    settings = Settings.from_env()
    select(load_agents(settings.agent_modules), ["emit", "echo"])
    signal.signal(signal.SIGTERM, _raise_interrupt)
    work_items = [*DEFAULT_ITEMS, *(f"item-{i}" for i in range(len(DEFAULT_ITEMS), items))][:items]
    data_dir = settings.home / f"demo-{uuid.uuid4().hex[:8]}" / "redis"
    stack = LocalStack(settings, ["emit", "echo"], workers=2, concurrency=2, data_dir=data_dir)
    try:
        with err.status("starting redis-server and 2 worker pools…"):
            stack.start()
        app = create_app(stack.settings)
        result = _run_with_progress(app, work_items, timeout, show=not as_json)
        result["workers"] = [w.hostname for w in stack.workers]
    finally:
        stack.stop()
        shutil.rmtree(data_dir.parent, ignore_errors=True)
    if as_json:
        _emit_json(result)
        return
    view = Table(title=result["workflow"])
    for column in ("step", "agent", "calls", "seconds", "result"):
        view.add_column(column, justify="right" if column in ("calls", "seconds") else "left")
    for step in result["steps"]:
        view.add_row(
            step["step"], step["agent"], str(step["calls"]), f"{step['seconds']:.3f}",
            _clip(json.dumps(step["result"])),
        )
    out.print(view)
    out.print_json(data=result["result"])
    out.print(f"[green]succeeded[/green] in {result['seconds']:.2f} s across {', '.join(result['workers'])}")


def _run_with_progress(app: Any, items: Sequence[str], timeout: float, show: bool) -> dict[str, Any]:
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


def _clip(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


dag_cli = typer.Typer(help="Validate, submit, inspect and cancel DAG runs.", no_args_is_help=True)
cli.add_typer(dag_cli, name="dag")
EXIT_BY_STATUS = {"succeeded": 0, "running": 0, "failed": 1, "cancelled": 1}


def _app() -> CoditectApp:
    settings = _settings()
    broker_mod.ping(settings.state_url, settings.connect_timeout)
    return create_app(settings)


def _validate(dag: Dag) -> Plan:
    settings = Settings.from_env()
    return validate(dag, load_agents(settings.agent_modules), max_nodes=settings.max_nodes)


@dag_cli.command("validate")
def dag_validate(
    file: Annotated[Path, typer.Argument(help="YAML or JSON DAG file.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check a DAG file without running it (exit 0 valid, 2 invalid)."""
    dag = Dag.load(file)
    plan = _validate(dag)
    summary = {"file": str(file), "name": dag.name, "valid": True, "nodes": len(dag.nodes), "roots": plan.roots}
    if as_json:
        _emit_json(summary)
    else:
        out.print(f"{file}: valid: {len(dag.nodes)} node(s), roots: {', '.join(plan.roots)}")


@dag_cli.command("submit")
def dag_submit(
    file: Annotated[Path, typer.Argument(help="YAML or JSON DAG file.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to end.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait at most.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Validate and start a run; with --wait, follow it to the end."""
    dag = Dag.load(file)
    app = _app()
    run = submit(dag, app)
    if not wait:
        if as_json:
            _emit_json(run.status())
        else:
            out.print(run.id)
        return
    if as_json:
        run.wait(timeout)
    else:
        err.print(f"run {run.id} ({dag.name}) submitted")
        _follow(run, len(dag.nodes), timeout)
    _finish(run.status(), as_json)


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
        _emit_json(doc)
    else:
        _print_run(doc)
    code = EXIT_BY_STATUS.get(doc["status"], 1)
    if code:
        raise typer.Exit(code)


def _print_run(doc: dict[str, Any]) -> None:
    view = Table(title=f"run {doc['run_id']} ({doc['name']}): {doc['status']}")
    for column in ("node", "agent", "status", "attempts", "seconds", "worker", "result / error"):
        view.add_column(column, justify="right" if column in ("attempts", "seconds") else "left")
    for nid, node in doc["nodes"].items():
        seconds = _seconds(node["started_at"], node["finished_at"])
        detail = node["error"] if node["status"] == "failed" else json.dumps(node["result"])
        view.add_row(nid, node["agent"], _coloured(node["status"]), str(node["attempts"]),
                     f"{seconds:.3f}" if seconds is not None else "-", node["worker"] or "-", _clip(str(detail), 50))
    out.print(view)
    for warning in doc["warnings"]:
        err.print(f"[yellow]warning:[/yellow] {warning}")


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _coloured(status: str) -> str:
    colour = {"succeeded": "green", "failed": "red", "running": "blue", "queued": "yellow",
              "cancelled": "magenta"}.get(status, "dim")
    return f"[{colour}]{status}[/{colour}]"


@dag_cli.command("status")
def dag_status(
    run_id: Annotated[str, typer.Argument(help="Run id from `dag submit`.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a run and its nodes (from the live state, else from the history)."""
    _finish(DagRun(run_id, _app()).status(), as_json)


@dag_cli.command("list")
def dag_list(
    limit: Annotated[int, typer.Option(min=1, help="How many runs, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List recent runs (live and recorded)."""
    runs = list_runs(_app(), limit)
    if as_json:
        _emit_json({"runs": runs})
        return
    view = Table(title="runs")
    for column in ("run id", "name", "status", "submitted", "finished"):
        view.add_column(column)
    for r in runs:
        view.add_row(r["run_id"], r["name"] or "-", _coloured(r["status"]), r["submitted_at"] or "-",
                     r["finished_at"] or "-")
    out.print(view)


@dag_cli.command("cancel")
def dag_cancel(run_id: Annotated[str, typer.Argument(help="Run id.")]) -> None:
    """Cancel a run: start nothing new, revoke what is queued; it ends cancelled."""
    run = DagRun(run_id, _app())
    if run.cancel():
        out.print(f"run {run_id} cancelled")
        return
    state = run.state()
    err.print(f"run {run_id} is already {state}; nothing to cancel")
    raise typer.Exit(1)


@dag_cli.command("graph")
def dag_graph(target: Annotated[str, typer.Argument(help="A DAG file, or a run id (states coloured).")]) -> None:
    """Print the DAG as a Mermaid flowchart."""
    if Path(target).exists():
        dag = Dag.load(target)
        _validate(dag)
        sys.stdout.write(mermaid(dag.to_json()))
        return
    run = DagRun(target, _app())
    doc = run.status()
    sys.stdout.write(mermaid(run.definition(), {nid: n["status"] for nid, n in doc["nodes"].items()}))


@cli.command()
def bench(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
    repeats: Annotated[int, typer.Option(min=1, help="Repetitions; medians are reported.")] = 3,
    fan: Annotated[int, typer.Option(min=1, help="Nodes in the fan-out.")] = 1000,
    length: Annotated[int, typer.Option(min=2, help="Nodes in the chain.")] = 200,
    concurrency: Annotated[int, typer.Option(min=1, help="Worker processes serving noop.")] = 2,
    observability: Annotated[bool, typer.Option(
        "--observability", help="Instead: DAG throughput with workers exporting traces vs not.")] = False,
) -> None:
    """Measure the DAG engine against plain Celery on the same workers, in one run."""
    from .bench import run_engine_bench

    settings = Settings.from_env()
    if observability:
        _bench_observability(settings, fan, repeats, concurrency, as_json)
        return
    stack = LocalStack(settings, ["noop"], workers=1, concurrency=concurrency,
                       data_dir=settings.home / f"bench-{uuid.uuid4().hex[:8]}" / "redis")
    try:
        with err.status("starting redis-server and the noop worker pool…") as status:
            stack.start()
            app = create_app(stack.settings)
            report = run_engine_bench(app, fan=fan, length=length, repeats=repeats,
                                      on_step=lambda step: status.update(step))
    finally:
        stack.stop()
        if stack.data_dir.name == "redis":
            shutil.rmtree(stack.data_dir.parent, ignore_errors=True)
    report["worker_concurrency"] = concurrency
    if as_json:
        _emit_json(report)
        return
    view = Table(title=f"coditect vs plain Celery (medians of {repeats}, concurrency {concurrency})")
    for column in ("figure", "plain Celery", "coditect", "ratio"):
        view.add_column(column, justify="left" if column == "figure" else "right")
    f, c = report["fanout"], report["chain"]
    view.add_row(f"fan-out of {fan} noop: tasks/s", str(f["celery_tasks_per_s"]), str(f["coditect_tasks_per_s"]),
                 f"{f['throughput_ratio']:.2f}")
    view.add_row(f"chain of {length} noop: seconds", str(c["celery_seconds"]), str(c["coditect_seconds"]),
                 f"{c['speed_ratio']:.2f}")
    view.add_row("chain: ms per edge (p50 / p99)", f"{c['celery_ms_per_hop']:.2f} (mean per hop)",
                 f"{c['edge_latency_p50_ms']:.2f} / {c['edge_latency_p99_ms']:.2f}", "")
    d, m = report["dispatch"], report["memory"]
    view.add_row(f"dispatch of a 1-node run: ms (p50 / p99, {d['runs']} runs)",
                 f"{d['celery_p50_ms']:.2f} / {d['celery_p99_ms']:.2f}",
                 f"{d['coditect_p50_ms']:.2f} / {d['coditect_p99_ms']:.2f}",
                 f"{d['celery_p50_ms'] / d['coditect_p50_ms']:.2f}")
    view.add_row("Redis memory per 1,000 in-flight nodes: KiB", f"{m['celery_bytes_per_1000'] / 1024:.0f}",
                 f"{m['coditect_bytes_per_1000'] / 1024:.0f}", f"{m['ratio']:.2f}")
    view.add_row("validate + plan 10,000 nodes: s", "", str(report["validate_10k_seconds"]), "")
    out.print(view)


def _bench_observability(settings: Settings, fan: int, repeats: int, concurrency: int, as_json: bool) -> None:
    """Tracing on vs off, on fresh noop pools that alternate over one embedded Redis."""
    from .bench import run_observability_bench
    from .embedded import WorkerProcess
    from .observability import tracing
    from .observability.receiver import OtlpReceiver

    receiver = OtlpReceiver().start()
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint  # the producer's root spans
    tracing.setup_tracing("coditect-bench")
    data_dir = settings.home / f"bench-{uuid.uuid4().hex[:8]}" / "redis"
    stack = LocalStack(settings, ["noop"], workers=0, data_dir=data_dir)
    try:
        with err.status("starting redis-server…") as status:
            stack.start()
            app = create_app(stack.settings)
            registry = Registry.from_url(stack.settings.state_url)

            def start_pool(traced: bool) -> Any:
                env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint} if traced else {"OTEL_SDK_DISABLED": "true"}
                pool = WorkerProcess(stack.settings, ["noop"], concurrency=concurrency, extra_env=env).start()
                pool.wait_ready(registry)
                return pool.stop

            report = run_observability_bench(app, start_pool, fan=fan, repeats=repeats,
                                             on_step=lambda step: status.update(step))
    finally:
        stack.stop()
        receiver.stop()
        shutil.rmtree(stack.data_dir.parent, ignore_errors=True)
    report["spans_received"] = len(receiver.snapshot())
    if as_json:
        _emit_json(report)
        return
    out.print(f"fan-out of {fan} noop, medians of {repeats}: tracing off {report['tracing_off_tasks_per_s']} tasks/s, "
              f"on {report['tracing_on_tasks_per_s']} tasks/s, ratio {report['throughput_ratio']:.2f} "
              f"({report['spans_received']} spans received)")


@cli.command()
def load(
    name: Annotated[str, typer.Argument(metavar="SCENARIO", help="steady, spike, stress or soak.")],
    scale: Annotated[float, typer.Option(
        help="Multiply the durations (and the stress scenario's runs in flight) by this; e.g. 0.05 for CI.")] = 1.0,
    dag_file: Annotated[Path | None, typer.Option("--dag", help="YAML or JSON DAG to submit (default: a diamond).")]
    = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Processes of the local worker pool (embedded only).")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Run a Locust scenario headless against the embedded stack or the configured cluster.

    Locust's CSV and HTML reports go under CODITECT_HOME/load/. Exit code 1 if any run failed.
    """
    from .load import runner
    from .load.report import read_failures, read_stats
    from .load.scenario import default_dag, scenario

    plan = scenario(name, scale)
    dag = Dag.load(dag_file) if dag_file else default_dag()
    settings = Settings.from_env()
    target = attach(settings)
    known = set(load_agents(settings.agent_modules))
    if not target.embedded:  # a cluster's workers may serve agents declared elsewhere
        broker_mod.ping(target.state_url, target.connect_timeout)
        client = broker_mod.redis_client(target.state_url)
        known |= set(Registry(client).by_agent())
        client.close()
    validate(dag, known, max_nodes=settings.max_nodes)
    stack = None
    if target.embedded:  # nothing configured and no `up` running: bring our own stack
        stack = LocalStack(settings, sorted({node.agent for node in dag.nodes.values()}), workers=1,
                           concurrency=concurrency, recorder=True,
                           data_dir=settings.home / f"load-{uuid.uuid4().hex[:8]}" / "redis")
    out_dir = settings.home / "load" / f"{plan.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if stack is not None:
            with err.status("starting redis-server and a worker pool…"):
                target = stack.start().settings
        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, disable=as_json) as progress:
            bar = progress.add_task(f"{plan.name}: {plan.summary} (×{scale:g})", total=plan.seconds)
            outcome = runner.run(target, plan, scale, dag_file, out_dir,
                                 on_tick=lambda elapsed: progress.update(bar, completed=min(elapsed, plan.seconds)))
    finally:
        if stack is not None:
            stack.stop()
            shutil.rmtree(stack.data_dir.parent, ignore_errors=True)
    figures = read_stats(outcome.prefix)
    failures = read_failures(outcome.prefix)
    report = {
        "scenario": plan.name, "scale": scale, "dag": dag.name, "seconds": plan.seconds,
        **{kind: f.to_json() for kind, f in figures.items()}, "failures": failures,
        "reports": {"csv": str(outcome.prefix) + "_stats.csv", "html": str(outcome.html), "log": str(outcome.log)},
    }
    failed = sum(f.failures for f in figures.values()) > 0 or outcome.exit_code != 0
    if as_json:
        _emit_json(report)
    else:
        view = Table(title=f"{plan.name} ×{scale:g}: {dag.name} ({len(dag.nodes)} nodes), times in ms")
        for column in ("request", "count", "failed", "per s", "p50", "p95", "p99", "max"):
            view.add_column(column, justify="left" if column == "request" else "right")
        for kind, f in figures.items():
            view.add_row(kind, str(f.requests), str(f.failures), f"{f.per_second:g}", f"{f.p50:g}", f"{f.p95:g}",
                         f"{f.p99:g}", f"{f.max:g}")
        out.print(view)
        for failure in failures:
            out.print(f"[red]{failure['occurrences']}×[/red] {failure['error']}", markup=True, highlight=False)
        out.print(f"reports: {outcome.html} and {outcome.prefix}_*.csv")
    if failed:
        raise typer.Exit(1)


@cli.command()
def exporter(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve /metrics on.")] = 9808,
    address: Annotated[str, typer.Option(help="Address to listen on (loopback unless you say so).")] = "127.0.0.1",
) -> None:
    """Serve Prometheus metrics of runs, nodes, agents, queues and breakers until Ctrl-C."""
    from prometheus_client import CollectorRegistry, start_http_server

    from .broker import redis_client
    from .observability.metrics import PlatformCollector

    settings = _settings()
    broker_mod.ping(settings.state_url, settings.connect_timeout)
    registry = CollectorRegistry()
    registry.register(PlatformCollector(redis_client(settings.state_url), settings.require_broker(),
                                        load_agents(settings.agent_modules)))
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        server, _ = start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        raise ConfigError("--port", f"cannot listen on {address}:{port}: {exc.strerror}") from None
    err.print(f"serving metrics on http://{address}:{port}/metrics")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()


@cli.command()
def flower(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the Flower web UI.")] = 5555,
    address: Annotated[str, typer.Option(help="Address to listen on (loopback unless you say so).")] = "127.0.0.1",
) -> None:
    """Run Flower against the configured broker, behind basic auth from CODITECT_FLOWER_BASIC_AUTH."""
    from . import flower as flower_mod

    os.environ["FLOWER_BASIC_AUTH"] = flower_mod.basic_auth()
    settings = _settings()
    broker_mod.ping(settings.require_broker(), settings.connect_timeout)
    create_app(settings).start(flower_mod.flower_argv(port, address))


@cli.command()
def recorder() -> None:
    """Record run history from Redis into the database, in the foreground until SIGTERM."""
    settings = _settings()
    broker_mod.ping(settings.state_url, settings.connect_timeout)
    rec = Recorder(broker_mod.redis_client(settings.state_url), HistoryStore.from_settings(settings))
    signal.signal(signal.SIGTERM, _raise_interrupt)
    err.print(f"recording history into {safe_url(settings.history_url)}")
    try:
        rec.run_forever()
    except KeyboardInterrupt:
        rec.drain()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the CLI and turn user errors into one line and an exit code."""
    command = typer.main.get_command(cli)
    try:
        args = list(argv) if argv is not None else None
        code = command.main(args=args, prog_name="coditect-tasks", standalone_mode=False)
        return code if isinstance(code, int) else 0  # click returns typer.Exit's code here
    except CoditectError as exc:
        err.print(f"coditect-tasks: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:  # typer's (vendored click's) usage errors: usage line + one error line
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"Error: {exc.format_message()}", markup=False, highlight=False)
        return int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        return 130


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())
