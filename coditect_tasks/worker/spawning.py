"""A node's agent spawned child runs (``dag.spawn``): prepare them as a submit would, then end the
attempt by starting them, in one script (``Attempt.spawn``)."""

from __future__ import annotations

import json
import threading
from typing import Any

from celery import Task

from .. import keys
from ..dag.spawn import Spawn
from ..engine.transitions import Engine
from ..errors import CoditectError
from ..steps import Ask, Cleanups, Step, drive
from ..submitting.submitter import Submitter
from .attempt import Attempt

_LOCK = threading.Lock()


def spawn_children(task: Task, attempt: Attempt, spawn: Spawn, item: bool) -> None:
    """End the attempt by starting the child runs the agent asked for; children inherit the run's
    priority, fairness key and versions. A child DAG that is not valid fails the node with its error, and
    nothing is started."""
    if item:
        attempt.fail("spawn: a foreach item cannot spawn child runs")
        return
    if not spawn.dags:
        attempt.succeed([])
        return
    settings = task.app.settings
    engine = attempt.engine
    try:
        run = keys.run_prefix(attempt.run_id) + "run"
        priority, fair, versions = engine.client.hmget(run, "priority", "fair", "versions")
        pins = json.loads(versions) if versions else {}
        cell = keys.cell_of(attempt.run_id)  # children live in their tree's cell
        steps = _submitter(task.app).children(
            spawn.dags, int(priority) if priority else None, str(fair or ""), pins, cell
        )
        writes = drive(steps, _Transport(engine).perform)
    except CoditectError as exc:  # a child DAG that cannot run
        attempt.fail(f"spawn: {exc}")
        return
    except Exception as exc:  # anything else ends the attempt too: left running, it would run again
        attempt.fail(f"spawn: {type(exc).__name__}: {exc}")
        return
    attempt.spawn([w.child() for w in writes], spawn.one, (settings.spawn_max_depth, settings.spawn_max_nodes))


def _submitter(app: Any) -> Submitter:
    """One per app and process: it caches the limits it has declared and the agents' medians."""
    with _LOCK:
        held = app.__dict__.get("_coditect_submitter")
        if held is None:
            held = app.__dict__["_coditect_submitter"] = Submitter(app, outage_seconds=0.0)
        return held  # type: ignore[no-any-return]


class _Transport:
    """The engine's connection, as the submit steps ask Redis (``t.redis``, ``t.scripts``)."""

    def __init__(self, engine: Engine) -> None:
        self.redis = engine.client
        self.scripts = engine.scripts

    def perform(self, step: Step, cleanups: Cleanups) -> Any:
        assert isinstance(step, Ask), step  # preparing children only reads Redis and declares limits
        return step.call(self)
