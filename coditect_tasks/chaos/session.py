"""One ``coditect-tasks chaos`` session: the target up, the probe workers up, the faults one by one
(with a progress bar), the verdicts, then everything of the session's own removed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from ..embedded import attach
from ..settings import Settings
from .faults import Dials, Lab, Outcome, run_fault
from .purge import purge
from .target import ComposeTarget, EmbeddedTarget, ProcessTarget, Target
from .verdicts import Objectives, judge


def _attempt(lab: Lab, name: str, dials: Dials, objectives: Objectives) -> Outcome:
    """Fault ``name``'s outcome; one that broke off (a probe that never started, a worker that
    would not stop) fails with what broke it, and the session goes on with the next."""
    try:
        return run_fault(lab, name, dials, 2 * objectives.latency + 30)
    except Exception as exc:  # the verdict names it; the clean-up still runs
        return Outcome(name, problems=[f"the fault broke off: {type(exc).__name__}: {exc}"])


def make_target(config: Settings | None, compose: tuple[str, str], redis_pid: int) -> Target:
    """The embedded target (``config`` None), else the deployment of ``config``."""
    if config is None:
        return EmbeddedTarget()
    settings = attach(config)
    project, service = compose
    if project:
        return ComposeTarget(settings, project, service)
    return ProcessTarget(settings, redis_pid)


def run_session(
    config: Settings | None,
    faults: Sequence[str],
    dials: Dials,
    objectives: Objectives,
    folder: Path,
    compose: tuple[str, str] = ("", "redis"),
    redis_pid: int = 0,
    console: Console | None = None,
) -> list[Outcome]:
    """Each fault's judged outcome (progress on ``console``, if given); the session's runs and
    processes are gone when it returns."""
    target = make_target(config, compose, redis_pid)
    outcomes: list[Outcome] = []
    try:
        lab = Lab(target, folder)
        try:
            with Progress(console=console, transient=True, disable=console is None) as progress:
                task = progress.add_task("faults", total=len(faults))
                for name in faults:
                    progress.update(task, description=name)
                    outcomes.append(judge(_attempt(lab, name, dials, objectives), objectives))
                    progress.advance(task)
        finally:
            try:
                purge(lab.client, lab.runs)
            finally:
                lab.close()
    finally:
        target.close()
    return outcomes
