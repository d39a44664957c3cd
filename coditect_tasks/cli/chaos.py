"""``chaos``: a catalogue of faults against a deployment, a verdict per fault, non-zero if one fails."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ..settings import Settings
from .context import emit_json, err, out

FAULTS_HELP = "Comma-separated faults (default: all): worker-kill, worker-term, redis-pause, redis-restart, " + (
    "partition, duplicate, slow."
)


def chaos(
    faults: Annotated[str, typer.Option(help=FAULTS_HELP)] = "",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
    report: Annotated[Path | None, typer.Option(help="Also write an HTML report with a timeline per fault.")] = None,
    target: Annotated[
        str, typer.Option(help="embedded: a fresh stack of its own; settings: the deployment CODITECT_* names.")
    ] = "embedded",
    compose: Annotated[
        str, typer.Option(help="With --target settings: act on Redis through this Compose project.")
    ] = "",
    redis_service: Annotated[str, typer.Option(help="The Compose service of the state Redis.")] = "redis",
    redis_pid: Annotated[int, typer.Option(min=0, help="With --target settings: the state Redis's process id.")] = 0,
    failover: Annotated[float, typer.Option(min=0, help="Objective: seconds from a fault to work going on.")] = 10.0,
    latency: Annotated[float, typer.Option(min=0, help="Objective: seconds a probe run takes under a fault.")] = 30.0,
    lost: Annotated[int, typer.Option(min=0, help="Objective: probe runs that may be lost.")] = 0,
    duplicates: Annotated[int, typer.Option(min=0, help="Objective: nodes that may succeed twice.")] = 0,
    pause: Annotated[float, typer.Option(min=0.1, help="Seconds Redis is stopped (redis-pause).")] = 3.0,
    partition: Annotated[float, typer.Option(min=0.1, help="Seconds a worker is cut off (partition).")] = 8.0,
) -> None:
    """Run faults against a deployment with probe workers of its own; a verdict per fault.

    Exits 1 if a fault missed an objective. Its runs are removed from Redis and the history after.
    """
    from ..chaos.faults import CATALOGUE, Dials
    from ..chaos.report import document, page, table
    from ..chaos.session import run_session
    from ..chaos.verdicts import Objectives

    chosen = [f.strip() for f in faults.split(",") if f.strip()] or list(CATALOGUE)
    unknown = [f for f in chosen if f not in CATALOGUE]
    if unknown:
        known = ", ".join(CATALOGUE)
        raise typer.BadParameter(f"unknown fault(s) {', '.join(unknown)}; known: {known}", param_hint="'--faults'")
    if target not in ("embedded", "settings"):
        raise typer.BadParameter(f"{target!r} is not embedded or settings", param_hint="'--target'")
    if target == "embedded" and (compose or redis_pid):
        raise typer.BadParameter(
            "--compose and --redis-pid act on a deployment: add --target settings", param_hint="'--target'"
        )
    objectives = Objectives(failover=failover, latency=latency, lost=lost, duplicates=duplicates)
    config = None if target == "embedded" else Settings.from_env()
    with tempfile.TemporaryDirectory(prefix="coditect-chaos-") as folder:
        outcomes = run_session(
            config,
            chosen,
            Dials(pause=pause, partition=partition),
            objectives,
            Path(folder),
            compose=(compose, redis_service),
            redis_pid=redis_pid,
            console=None if as_json else err,
        )
    if report is not None:
        report.write_text(page(outcomes, objectives))
    if as_json:
        emit_json(document(outcomes, objectives))
    else:
        out.print(table(outcomes))
        if report is not None:
            err.print(f"report: {report}")
    if any(o.verdict == "failed" for o in outcomes):
        raise typer.Exit(1)
