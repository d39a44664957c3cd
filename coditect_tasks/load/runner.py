"""Run one scenario headless in a Locust subprocess (Locust patches its process
with gevent; the caller's stays as it is) and collect its reports."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import broker
from ..agents import load_agents
from ..connection import redis_client
from ..dag.plan import Plan, validate
from ..dag.spec import Dag
from ..embedded import attach
from ..registry import Registry
from ..settings import Settings
from .scenario import Scenario

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
#: Seconds Locust lets runs in flight finish after the last stage, so they are counted.
STOP_TIMEOUT = 60


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    prefix: Path  # Locust's --csv prefix
    html: Path
    log: Path


def validate_dag(dag: Dag, settings: Settings) -> Plan:
    """Validate the DAG a load run will submit, before anything starts: against the declared
    agents, plus, on a cluster, the live ones (its workers may serve agents declared elsewhere)."""
    known = set(load_agents(settings.agent_modules))
    target = attach(settings)
    if not target.embedded:
        broker.ping(target.state_url, target.connect_timeout)
        client = redis_client(target.state_url)
        try:
            known |= set(Registry(client).by_agent())
        finally:
            client.close()
    return validate(dag, known, **settings.dag_limits())


def run(
    settings: Settings,
    plan: Scenario,
    scale: float,
    dag_file: Path | None,
    out_dir: Path,
    on_tick: Callable[[float], None] = lambda elapsed: None,
    system: str = "coditect",
) -> Outcome:
    """Run ``plan`` against the stack ``settings`` reach; reports go to ``out_dir``. ``system``
    ``celery`` submits the same DAG as plain Celery canvas instead (``canvas.py``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outcome = Outcome(0, out_dir / "locust", out_dir / "report.html", out_dir / "locust.log")
    env = {
        **os.environ,
        **settings.environment(),
        "CODITECT_LOAD_SCENARIO": plan.name,
        "CODITECT_LOAD_SCALE": repr(scale),
        "CODITECT_LOAD_RATE": repr(plan.rate) if plan.rate else "",
        "CODITECT_LOAD_DAG": str(dag_file.resolve()) if dag_file else "",
        "CODITECT_LOAD_SYSTEM": system,
    }
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "--csv",
        str(outcome.prefix),
        "--csv-full-history",  # each request type's percentiles every second, for the latency plot
        "--html",
        str(outcome.html),
        "--loglevel",
        "WARNING",
        "--logfile",
        str(outcome.log),
        "--stop-timeout",
        str(STOP_TIMEOUT),
        "--exit-code-on-error",
        "1",
    ]
    started = time.monotonic()
    with (out_dir / "locust.out").open("wb") as output:
        proc = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                on_tick(time.monotonic() - started)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.5)
        except KeyboardInterrupt:  # stop early, but keep what was measured
            proc.terminate()  # Locust quits cleanly on SIGTERM and still writes its reports
        finally:
            try:
                proc.wait(timeout=STOP_TIMEOUT + 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return Outcome(proc.returncode, outcome.prefix, outcome.html, outcome.log)
