"""The Locust side: a user that submits DAG runs through the public API.

Imported only inside the Locust process (``locustfile.py``): Locust patches the
process with gevent, so every Redis call here yields to the other users.
Each run is one Locust request of type ``run`` (response time: submit → terminal
state; a failure unless it succeeded) and one of type ``dispatch`` (submit → first
node running).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import gevent
import gevent.event
import redis
from locust import User, task

from .. import keys
from ..dag.run import DagRun, submit
from ..dag.spec import Dag
from ..status import TERMINAL

#: Seconds a run may take before the load test counts it as failed.
RUN_TIMEOUT = 300.0
#: Seconds between checks on a run in case its end announcement was missed.
RECHECK_SECONDS = 5.0
_PREFIX, _SUFFIX = keys.run_channel("\0").split("\0")


class RunFailed(Exception):
    """A run that did not succeed; Locust groups failures by this message."""


class RunWatcher:
    """One pattern subscription per Locust process tells every waiting user when its
    run ends, instead of one pub/sub connection per run in flight."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._ended: dict[str, float] = {}  # run id → perf_counter() when its end was announced
        self._waiters: dict[str, gevent.event.Event] = {}
        self._greenlet = gevent.spawn(self._listen)

    def _listen(self) -> None:
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.psubscribe(keys.run_channel("*"))
                for message in pubsub.listen():
                    self._announce(str(message["channel"]).removeprefix(_PREFIX).removesuffix(_SUFFIX))
            except redis.RedisError:
                gevent.sleep(0.5)  # the broker restarts: subscribe again (waiters re-check meanwhile)
            finally:
                pubsub.close()

    def _announce(self, run_id: str) -> None:
        now = time.perf_counter()
        self._ended[run_id] = now
        if len(self._ended) > 10_000:  # runs nobody here waits for (other clients of a shared broker)
            self._ended = {r: t for r, t in self._ended.items() if now - t < 60 or r in self._waiters}
        if (waiter := self._waiters.get(run_id)) is not None:
            waiter.set()

    def wait(self, run: DagRun, timeout: float) -> tuple[str, float]:
        """(final state, perf_counter() at its end) of ``run``; ``running`` after ``timeout`` s."""
        deadline = time.perf_counter() + timeout
        waiter = self._waiters[run.id] = gevent.event.Event()
        try:
            while True:
                if run.id in self._ended:
                    return run.state(), self._ended.pop(run.id)
                left = deadline - time.perf_counter()
                if left <= 0:
                    return run.state(), time.perf_counter()
                if not waiter.wait(min(left, RECHECK_SECONDS)) and (state := run.state()) in TERMINAL:
                    return state, time.perf_counter()  # its announcement was missed
        finally:
            del self._waiters[run.id]


class DagUser(User):
    """Submits ``dag`` through ``coditect_tasks.submit`` and reports each run.

    Configured by the locustfile: ``app``, ``dag`` and ``label`` (the request name).
    """

    abstract = True
    app: ClassVar[Any]
    dag: ClassVar[Dag]
    label: ClassVar[str]
    _watcher: ClassVar[RunWatcher | None] = None

    @classmethod
    def watcher(cls) -> RunWatcher:
        if DagUser._watcher is None:
            DagUser._watcher = RunWatcher(redis.Redis.from_url(cls.app.settings.state_url, decode_responses=True))
        return DagUser._watcher

    @task
    def run_dag(self) -> None:
        fire = self.environment.events.request.fire
        started = time.perf_counter()
        try:
            run = submit(self.dag, self.app)
            state, ended = self.watcher().wait(run, RUN_TIMEOUT)
            dispatch = run.dispatch_seconds()
        except Exception as exc:  # submitting or following the run failed: a failed run all the same
            fire(
                request_type="run",
                name=self.label,
                response_time=(time.perf_counter() - started) * 1000,
                response_length=0,
                exception=RunFailed(f"{type(exc).__name__}: {exc}"),
            )
            return
        exception = None
        if state != "succeeded":
            exception = RunFailed(f"run {state if state in TERMINAL else 'timed out'}: {_first_error(run)}")
        fire(
            request_type="run",
            name=self.label,
            response_time=(ended - started) * 1000,
            response_length=len(self.dag.nodes),
            exception=exception,
        )
        if dispatch is not None:
            fire(
                request_type="dispatch",
                name=self.label,
                response_time=dispatch * 1000,
                response_length=0,
                exception=None,
            )


def _first_error(run: DagRun) -> str:
    try:
        doc = run.status()
    except Exception as exc:  # the state is unreadable: say so rather than lose the failure
        return f"status unreadable: {exc}"
    errors = [f"{nid}: {n['error']}" for nid, n in doc["nodes"].items() if n.get("error")]
    return errors[0][:200] if errors else doc.get("error") or "no node error"
