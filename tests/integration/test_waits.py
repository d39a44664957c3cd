"""Waiting nodes on real workers and a real Redis: they hold no worker slot, and their deadlines,
waits and spawned children survive a SIGKILL of Redis (AOF on) and of every worker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from coditect_tasks import Client, Dag, submit
from coditect_tasks.app import CoditectApp, create_app
from coditect_tasks.embedded import WorkerProcess
from coditect_tasks.redis_server import RedisServer
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

from ..conftest import ROOT, WorkerFactory, run_cli, wait_for


def test_runs_waiting_for_approval_or_an_event_hold_no_slot_of_a_one_process_pool(
    app: CoditectApp, worker_factory: WorkerFactory
) -> None:
    worker_factory(["echo"], concurrency=1)
    gated = Dag("gated")
    gated.approval("ok")
    gated.node("after", "echo", after=["ok"])
    waiting = [submit(gated, app) for _ in range(10)]
    plain = Dag("plain")
    plain.node("only", "echo")
    assert submit(plain, app).wait(timeout=30) == "succeeded"  # while the ten wait
    assert {run.status()["nodes"]["ok"]["status"] for run in waiting} == {"waiting"}
    for run in waiting:
        run.approve("ok", by="ana")
    assert [run.wait(timeout=30) for run in waiting] == ["succeeded"] * 10
    # and an event reaches its waiting node's successor on the same pool within milliseconds
    dag = Dag("prompt")
    dag.wait("ci", "ci.finished", key="{sha}", params={"sha": "abc"})
    dag.node("after", "echo", after=["ci"])
    run = submit(dag, app)
    wait_for(lambda: run.status()["nodes"]["ci"]["status"] == "waiting", 10, "the wait to begin")
    sent = time.time()
    assert Client.of(app).send_event("ci.finished", key="abc", data={"green": True}) == 1
    assert run.wait(timeout=30) == "succeeded"
    began = datetime.fromisoformat(run.status()["nodes"]["after"]["started_at"]).timestamp()
    print(f"event sent → its waiting node's successor running: {(began - sent) * 1000:.1f} ms")
    assert began - sent < 2.0
    # a wait after an agent node: the agent's start counts the wait down, which is no agent's work
    chained = Dag("build-then-wait")
    chained.node("build", "echo")
    chained.wait("ci", "ci.built", key="x", after=["build"])
    built = submit(chained, app)
    wait_for(lambda: built.status()["nodes"]["ci"]["status"] == "waiting", 10, "the wait after the build")
    Client.of(app).send_event("ci.built", key="x")
    assert built.wait(timeout=10) == "succeeded"


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, with AOF on, that the test kills and restarts."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def test_waits_sleeps_and_spawns_outlast_a_sigkill_of_redis_and_of_every_worker(
    durable_redis: RedisServer, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home", broker_url=durable_redis.url, log_level="WARNING")
    app = create_app(settings)
    registry = Registry.from_url(settings.state_url)

    def worker(index: int) -> WorkerProcess:
        log = tmp_path / f"w{index}.log"
        agents = ["echo", "plan"]
        process = WorkerProcess(settings, agents, concurrency=1, log_path=log, extra_env={"PYTHONPATH": str(ROOT)})
        return process.start()

    first = worker(0)
    second: WorkerProcess | None = None
    try:
        first.wait_ready(registry)
        waits, sleeps = [], []
        submitted = time.monotonic()
        for i in range(5):
            dag = Dag(f"wait-{i}")
            dag.wait("go", "release", key=f"k{i}")
            dag.node("after", "echo", after=["go"])
            waits.append(submit(dag, app))
            dag = Dag(f"sleep-{i}")
            dag.sleep("nap", seconds=8)
            dag.node("after", "echo", after=["nap"])
            sleeps.append(submit(dag, app))
        planned = Dag("planned")  # a node waiting for two child runs, each waiting in a sleep
        planned.node("plan", "plan", params={"items": [1, 2], "agent": "sleep", "seconds": 6})
        planned.node("after", "echo", after=["plan"])
        spawning = submit(planned, app)
        wait_for(lambda: spawning.status()["nodes"]["plan"]["status"] == "waiting", 8, "the planner to spawn")
        deadline = time.time() + 8 - (time.monotonic() - submitted)
        first.kill(group=True)
        durable_redis.kill()
        time.sleep(1.0)
        durable_redis.start()
        second = worker(1)
        second.wait_ready(registry)
        with Client(settings) as client:
            assert sum(client.send_event("release", key=f"k{i}", data={"i": i}) for i in range(5)) == 5
        assert [run.wait(timeout=60) for run in waits] == ["succeeded"] * 5
        assert [run.wait(timeout=60) for run in sleeps] == ["succeeded"] * 5
        assert spawning.wait(timeout=60) == "succeeded"  # its children's sleeps ended, and so did its wait
        assert [child["rest"] is not None for child in spawning.results()["plan"]] == [True, True]
        ended = [datetime.fromisoformat(run.status()["nodes"]["nap"]["finished_at"]).timestamp() for run in sleeps]
        error = max(abs(at - deadline) for at in ended)
        print(f"sleeps ended within {error:.2f} s of their deadline, across a SIGKILL of Redis and the worker")
        assert error <= 2.0
    finally:
        for process in (first, second):
            if process is not None:
                process.stop()
        registry.client.close()
        app.close()


def test_the_cli_shows_what_a_node_waits_for_sends_its_event_and_decides_an_approval(app: CoditectApp) -> None:
    dag = Dag("cli")
    dag.wait("ci", "ci.finished", key="{sha}", params={"sha": "abc"})
    dag.approval("ship", after=["ci"])
    run = submit(dag, app)
    env = app.settings.environment()
    status = run_cli(["dag", "status", run.id], {**env, "COLUMNS": "200"})
    assert status.returncode == 0 and "(event ci.finished abc)" in status.stdout and "waiting" in status.stdout
    bad = run_cli(["event", "send", "ci.finished", "--key", "abc", "--data", "{oops"], env)
    assert bad.returncode == 2 and bad.stderr.startswith("coditect-tasks: error: --data: not JSON")
    sent = run_cli(["event", "send", "ci.finished", "--key", "abc", "--data", '{"green": true}', "--json"], env)
    assert sent.returncode == 0 and json.loads(sent.stdout) == {"resolved": 1}
    decided = run_cli(["dag", "approve", run.id, "ship", "--as", "ana", "--comment", "ok"], env)
    assert decided.returncode == 0 and "ship: succeeded (1 of 1 approval(s))" in decided.stdout
    again = run_cli(["dag", "approve", run.id, "ship", "--as", "bo"], env)
    assert again.returncode == 1 and "node ship is succeeded, not waiting" in again.stderr
    assert run.wait(timeout=10) == "succeeded" and run.results()["ci"] == {"green": True}
