"""The Locust side: users that submit DAG runs through the public API, or the same DAG as
plain Celery canvas, to compare the two on one stack.

Imported only inside the Locust process (``locustfile.py``): Locust patches the
process with gevent, so every Redis call here yields to the other users.
Each run is one Locust request of type ``run`` (response time: submit → terminal
state; a failure unless it succeeded) and one of type ``dispatch`` (submit → first
node running).
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple

import gevent
import gevent.pool
from locust import User, task

from .. import keys
from ..client import Client, DagRun
from ..dag.spec import Dag
from ..status import TERMINAL
from .canvas import canvas

#: Seconds a run may take before the load test counts it as failed.
RUN_TIMEOUT = 300.0


class RunFailed(Exception):
    """A run that did not succeed; Locust groups failures by this message."""


class Outcome(NamedTuple):
    """One run as the load test reports it."""

    seconds: float  # submit → terminal state
    dispatch: float | None  # submit → first node running (plain Celery: first task done)
    error: str | None  # None if the run succeeded


class RunUser(User):
    """Submits one run per task and reports it: a request of type ``run`` and one of ``dispatch``.

    With ``open_loop`` each task starts its run in a greenlet of its own and returns at once, so
    runs arrive at the scenario's rate however long they take (latency is then measured, not
    hidden by users that wait); ``in_flight`` tracks them so the end of the test lets them finish.
    Configured by the locustfile: ``app``, ``dag`` and ``label`` (the request name).
    """

    abstract = True
    app: ClassVar[Any]
    dag: ClassVar[Dag]
    label: ClassVar[str]
    open_loop: ClassVar[bool] = False
    #: Seconds between one user's arrivals (open loop).
    pacing: ClassVar[float] = 1.0
    in_flight: ClassVar[gevent.pool.Group] = gevent.pool.Group()
    _phases: ClassVar[itertools.count[int]] = itertools.count()
    _due = 0.0

    def on_start(self) -> None:
        if self.open_loop:
            # k-th user's phase: frac(k × golden ratio) of the period, evenly spread for any count
            phase = (next(RunUser._phases) * 0.6180339887) % 1.0 * self.pacing
            self._due = time.perf_counter() + phase
            gevent.sleep(phase)

    def wait_time(self) -> float:
        """Open loop: seconds until this user's next arrival on its own fixed schedule (phase +
        k × pacing). Locust's ``constant_pacing`` counts from the last run instead, so one stall of
        the process left every user due at once and in step from then on: runs arrived in bursts
        of the whole rate (up to 24 queued messages at 13.5 runs/s while the workers idled), and
        both systems' latencies measured the bursts. A stall here delays only the arrivals it covers."""
        self._due += self.pacing
        return max(0.0, self._due - time.perf_counter())

    @task
    def arrive(self) -> None:
        if self.open_loop:
            RunUser.in_flight.spawn(self._report)
        else:
            self._report()

    def _report(self) -> None:
        fire = self.environment.events.request.fire
        started = time.perf_counter()
        try:
            outcome = self.one_run()
        except Exception as exc:  # submitting or following the run failed: a failed run all the same
            outcome = Outcome(time.perf_counter() - started, None, f"{type(exc).__name__}: {exc}")
        fire(
            request_type="run",
            name=self.label,
            response_time=outcome.seconds * 1000,
            response_length=len(self.dag.nodes),
            exception=RunFailed(outcome.error) if outcome.error is not None else None,
        )
        if outcome.dispatch is not None:
            fire(
                request_type="dispatch",
                name=self.label,
                response_time=outcome.dispatch * 1000,
                response_length=0,
                exception=None,
            )

    def one_run(self) -> Outcome:
        raise NotImplementedError


class DagUser(RunUser):
    """Submits ``dag`` through the app's ``Client``, whose waits share one subscription to every
    run's end (not one pub/sub connection per run in flight)."""

    abstract = True

    def one_run(self) -> Outcome:
        submitted = datetime.now(UTC)
        started = time.perf_counter()
        client = Client.of(self.app)
        run = client.submit(self.dag)
        state = run.wait(RUN_TIMEOUT)
        ended = time.perf_counter()
        error = None
        if state != "succeeded":
            error = f"run {state if state in TERMINAL else 'timed out'}: {_first_error(run)}"
        # the run's own end time, not when this greenlet got round to noticing it
        finished = client.redis.hget(keys.run_prefix(run.id) + "run", "finished_at")
        seconds = (_utc(str(finished)) - submitted).total_seconds() if finished else ended - started
        return Outcome(seconds, run.dispatch_seconds(), error)


class CanvasUser(RunUser):
    """Plain Celery doing the same work: ``dag`` as canvas (``canvas.py``) on the same broker,
    result backend and worker processes, reported the same way. Celery keeps no start time
    unless ``task_track_started`` adds a write per task, so its dispatch ends when the first task
    does (a ``noop`` root: microseconds later)."""

    abstract = True

    def one_run(self) -> Outcome:
        submitted = datetime.now(UTC)
        started = time.perf_counter()
        shape = canvas(self.dag, self.app)
        result = shape.signature.apply_async()
        try:
            result.get(timeout=RUN_TIMEOUT, disable_sync_subtasks=False)
            error = None
        except Exception as exc:  # a task failed or the run outlasted RUN_TIMEOUT
            error = f"canvas failed: {type(exc).__name__}: {exc}"
        # the last task's own end time, as for the platform's runs
        last = self.app.backend.get_task_meta(result.id).get("date_done")
        seconds = (_utc(last) - submitted).total_seconds() if last else time.perf_counter() - started
        done = [self.app.backend.get_task_meta(task_id).get("date_done") for task_id in shape.first]
        stamps = [_utc(d) for d in done if d]
        dispatch = (min(stamps) - submitted).total_seconds() if stamps else None
        return Outcome(seconds, dispatch, error)


def _utc(stamp: datetime | str) -> datetime:
    """A stored timestamp (ISO-8601 text or a datetime; naive means UTC) as an aware datetime."""
    value = stamp if isinstance(stamp, datetime) else datetime.fromisoformat(stamp)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _first_error(run: DagRun) -> str:
    try:
        doc = run.status()
    except Exception as exc:  # the state is unreadable: say so rather than lose the failure
        return f"status unreadable: {exc}"
    errors = [f"{nid}: {n['error']}" for nid, n in doc["nodes"].items() if n.get("error")]
    return errors[0][:200] if errors else doc.get("error") or "no node error"
