"""``worker``, ``agents`` and ``up``: serve agents, see who serves what, run the local stack."""

from __future__ import annotations

import os
import socket
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import ConfigError
from ..settings import Settings, safe_url
from .context import emit_json, err, names, out, settings, stop_on_sigterm

#: Pools that enforce time limits by killing the call's process; threads and solo cannot, so a hung
#: call there would renew its lease forever and its node would never end.
POOLS = ("prefork",)


def worker(
    agents: Annotated[str, typer.Option("--agents", "-a", help="Comma-separated agent names to serve.")],
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", help="Pool size (default: CPUs).")] = None,
    pool: Annotated[
        str, typer.Option("--pool", "-P", help="prefork (the one pool that enforces time limits).")
    ] = "prefork",
    hostname: Annotated[
        str | None, typer.Option("--hostname", "-n", help="Unique worker name (default: <agents>-<pid>@<host>).")
    ] = None,
    max_tasks_per_child: Annotated[int | None, typer.Option(help="Recycle a pool process after N calls.")] = None,
    events: Annotated[bool, typer.Option("--events/--no-events", "-E", help="Send task events (Flower).")] = False,
) -> None:
    """Run a worker pool in the foreground that consumes only these agents' queues."""
    from .. import broker
    from ..agents import load_agents, select
    from ..app import create_app
    from ..connection import require_noeviction
    from ..observability import signals as observability_signals
    from ..registry import Registry

    if pool not in POOLS:
        raise ConfigError(
            "--pool",
            f"{pool!r} is not one of {', '.join(POOLS)}: only a process pool can stop a call at its time limit",
        )
    config = settings()
    chosen = select(load_agents(config.agent_modules), names(agents, "--agents"))
    broker.ping(config.require_broker(), config.connect_timeout)
    broker.ping(config.state_url, config.connect_timeout)
    node_name = worker_name(hostname, [a.name for a in chosen])
    registry = Registry.from_url(config.state_url)
    try:
        require_noeviction(registry.client, config.state_url)
        if registry.is_live(node_name):
            raise ConfigError(
                "--hostname", f"a worker named {node_name!r} is already live; give this pool its own name"
            )
    finally:
        registry.client.close()
    app = create_app(config)
    observability_signals.install(config.log_level, pool)
    argv = [
        "worker",
        "--queues",
        ",".join(a.queue for a in chosen),
        "--pool",
        pool,
        "--loglevel",
        config.log_level,
        "--without-gossip",
        "--without-mingle",
        "--hostname",
        node_name,
    ]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if max_tasks_per_child:
        argv += ["--max-tasks-per-child", str(max_tasks_per_child)]
    if events:
        argv.append("--task-events")
    app.worker_main(argv)


def health(
    ready: Annotated[bool, typer.Option("--ready", help="Also require the worker to be taking work.")] = False,
    max_age: Annotated[float, typer.Option(min=1, help="Seconds a heartbeat proves the worker alive.")] = 15.0,
) -> None:
    """Probe the worker that beats CODITECT_HEALTH_FILE: exit 0 if alive (and ready), else 1.

    For container liveness and readiness checks: it reads one local file, never the broker.
    """
    from ..worker.health import problem

    path = Settings.from_env().health_file
    if path is None:
        raise ConfigError("CODITECT_HEALTH_FILE", "not set: there is no worker heartbeat file to probe")
    why = problem(path, ready, max_age)
    if why:
        err.print(f"coditect-tasks: unhealthy: {why}", markup=False, soft_wrap=True)
        raise typer.Exit(1)
    out.print("ready" if ready else "alive")


def worker_name(hostname: str | None, agents: list[str]) -> str:
    """The pool's node name: ``hostname`` as Celery expands it (``%h`` …), else one unique to this
    process, so two pools on one host never share a registry entry or a reservation note."""
    from celery.utils.nodenames import default_nodename, host_format

    if hostname is None:
        hostname = f"{'+'.join(agents)[:40]}-{os.getpid()}@{socket.gethostname()}"
    return str(host_format(default_nodename(hostname)))


agents_cli = typer.Typer(
    help="Show every agent with its live workers and queue depth; ramp and roll back its versions.",
    invoke_without_command=True,
)


@agents_cli.callback()
def agents_cmd(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Show every agent (each version its own row) with its live workers, queue depth and ramp."""
    if ctx.invoked_subcommand is not None:
        return
    from .. import broker
    from ..agents import load_agents
    from ..client import Client

    config = settings()
    load_agents(config.agent_modules)  # a module that does not load is the first thing to say
    broker_url = config.require_broker()
    broker.ping(config.state_url, config.connect_timeout)
    with Client(config) as client:
        data = client.agents()
    if as_json:
        emit_json(data)
        return
    view = Table(title=f"agents on {safe_url(broker_url)}")
    for column in ("agent", "queue", "workers", "slots", "queued", "breaker", "ramp", "hosts"):
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
            _ramp(info["ramp"]),
            ", ".join(w["hostname"] for w in workers) or "-",
        )
    out.print(view)


def _ramp(ramp: dict[str, Any] | None) -> str:
    """``1 → 2 at 10 %``; the base alone once rolled back; ``-`` with no ramp."""
    if ramp is None:
        return "-"
    base = ramp["base"] or "unversioned"
    return f"{base} → {ramp['to']} at {ramp['percent']:g} %" if ramp["to"] else base


@agents_cli.command("ramp")
def agents_ramp(
    agent: Annotated[str, typer.Argument(help="The agent's name (coder).")],
    to: Annotated[str, typer.Option("--to", help="The version new runs go to (its workers serve agents.NAME@TO).")],
    percent: Annotated[float, typer.Option(min=0, max=100, help="Share of new runs pinned to it.")],
    base: Annotated[
        str | None, typer.Option("--from", help="The version the rest run on (default: the ramp's, else unversioned).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Pin a share of the agent's new runs to a version; runs keep their version to the end."""
    from ..client import Client

    with Client(settings()) as client:
        ramp = client.ramp(agent, to=to, percent=percent, base=base)
    if as_json:
        emit_json(ramp)
    else:
        out.print(f"{agent}: {_ramp(ramp)}")


@agents_cli.command("rollback")
def agents_rollback(
    agent: Annotated[str, typer.Argument(help="The agent's name.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """New runs on the base version again at once; runs already pinned finish on theirs."""
    from ..client import Client

    with Client(settings()) as client:
        ramp = client.rollback(agent)
    if as_json:
        emit_json(ramp)
    else:
        out.print(f"{agent}: new runs on {_ramp(ramp)}")


def up(
    workers: Annotated[int, typer.Option(min=0, help="Local worker pools to start.")] = 2,
    concurrency: Annotated[int, typer.Option(min=1, help="Processes per pool.")] = 2,
    agents: Annotated[str | None, typer.Option(help="Agents the pools serve (default: all).")] = None,
) -> None:
    """Start the local stack (embedded Redis unless configured, plus workers) until Ctrl-C."""
    from ..agents import load_agents, select
    from ..embedded import LocalStack

    config = Settings.from_env()
    declared = load_agents(config.agent_modules)
    served = names(agents, "--agents") if agents else sorted(declared)
    select(declared, served)
    stop_on_sigterm()
    stack = LocalStack(
        config, served, workers=workers, concurrency=concurrency, record=True, services=("recorder", "scheduler")
    )
    try:
        with err.status("starting the local stack…"):
            stack.start()
        err.print(f"[green]up[/green]: {len(stack.workers)} worker pool(s) serving {', '.join(served)}")
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
