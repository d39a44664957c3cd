"""Locust entry point: ``coditect-tasks load`` runs it headless; run it yourself for
Locust's web UI (``locust -f coditect_tasks/load/locustfile.py``).

Configured by the environment: ``CODITECT_LOAD_SCENARIO`` (default ``steady``),
``CODITECT_LOAD_SCALE`` (default 1), ``CODITECT_LOAD_RATE`` (runs/s of steady or soak),
``CODITECT_LOAD_DAG`` (a DAG file; default the diamond of ``scenario.default_dag``),
``CODITECT_LOAD_SYSTEM`` (``coditect``, the default, or ``celery``: the same DAG as plain Celery
canvas) and the usual ``CODITECT_*`` settings.
Paced scenarios are open-loop: runs arrive at the scenario's rate however long they take.
"""

from __future__ import annotations

import os
from typing import Any

from locust import LoadTestShape, constant, events

from coditect_tasks.app import create_app
from coditect_tasks.dag.spec import Dag
from coditect_tasks.embedded import attach
from coditect_tasks.load.scenario import default_dag, scenario
from coditect_tasks.load.user import CanvasUser, DagUser, RunUser
from coditect_tasks.settings import Settings

SCENARIO = scenario(
    os.environ.get("CODITECT_LOAD_SCENARIO", "steady"),
    float(os.environ.get("CODITECT_LOAD_SCALE", "1")),
    float(os.environ["CODITECT_LOAD_RATE"]) if os.environ.get("CODITECT_LOAD_RATE") else None,
)
_DAG = Dag.load(os.environ["CODITECT_LOAD_DAG"]) if os.environ.get("CODITECT_LOAD_DAG") else default_dag()


#: Seconds the end of the test waits for runs in flight (as ``runner.STOP_TIMEOUT``).
DRAIN_SECONDS = 60


class ScenarioUser(CanvasUser if os.environ.get("CODITECT_LOAD_SYSTEM") == "celery" else DagUser):  # type: ignore[misc]
    app = create_app(attach(Settings.from_env()))
    dag = _DAG
    label = f"{SCENARIO.name}/{_DAG.name}"
    open_loop = SCENARIO.pacing > 0
    pacing = SCENARIO.pacing
    if not open_loop:
        wait_time = constant(0)  # a closed loop: each user starts its next run as soon as one ends


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def _let_runs_in_flight_end(**kwargs: Any) -> None:
    RunUser.in_flight.join(timeout=DRAIN_SECONDS)


class ScenarioShape(LoadTestShape):
    """Users over time as the scenario's stages say."""

    def tick(self) -> Any:
        return SCENARIO.tick(self.get_run_time())  # type: ignore[no-untyped-call]
