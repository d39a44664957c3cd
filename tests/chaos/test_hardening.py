"""Chaos of the hardening round: a duplicated message, and a stale attempt's hard time limit.

Each test prints its figure (executions of the node, the outcome of the run).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import CoditectApp, create_app
from coditect_tasks.client import DagRun
from coditect_tasks.redis_server import RedisServer, stop_processes
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

from ..conftest import SUPPORT_ENV, SUPPORT_MODULES, WorkerFactory, own_pools, wait_for

pytestmark = pytest.mark.chaos


def test_a_second_message_for_a_running_node_is_dropped(
    test_app: CoditectApp, worker_factory: WorkerFactory, registry: Registry, tmp_path: Path
) -> None:
    worker_factory(["counted"], concurrency=2, extra_env=SUPPORT_ENV)
    log = tmp_path / "executions.log"
    dag = Dag("duplicate")
    dag.node("once", "counted", params={"log": str(log), "seconds": 3})
    run = submit(dag, test_app)
    wait_for(lambda: run.status()["nodes"]["once"]["status"] == "running", 30, "the node to run")
    # a second message for the running node, as a broker redelivery or a double publish would bring
    test_app.tasks["agents.counted"].apply_async(kwargs={"run_id": run.id, "node_id": "once"})
    wait_for(lambda: registry.client.hget(keys.METRICS, "duplicates|counted") == "1", 15, "the duplicate dropped")
    assert run.wait(30) == "succeeded"
    executions = len(log.read_text().splitlines())
    print(f"a node delivered twice while running: {executions} execution(s)")
    assert executions == 1
    assert run.status()["nodes"]["once"]["attempts"] == 1


def test_a_stale_attempts_hard_time_limit_fails_nothing(
    test_app: CoditectApp, worker_factory: WorkerFactory, registry: Registry
) -> None:
    frozen = worker_factory(["sticky"], concurrency=1, extra_env=SUPPORT_ENV)
    dag = Dag("stale")
    # attempt 1 hangs until its 10 s hard limit kills it; attempt 2 takes 8 s
    dag.node("n", "sticky", params={"seconds": 8}, timeout=10)
    run = submit(dag, test_app)

    def node() -> dict[str, object]:
        nodes: dict[str, dict[str, object]] = run.status()["nodes"]
        return nodes["n"]

    wait_for(lambda: node()["worker"] == frozen.hostname and node()["status"] == "running", 30, "attempt 1")
    os.killpg(frozen.pid, signal.SIGSTOP)  # the whole worker freezes: its lease lapses, its timer stops
    try:
        other = worker_factory(["sticky"], concurrency=1, extra_env=SUPPORT_ENV)
        wait_for(lambda: node()["attempts"] == 2 and node()["worker"] == other.hostname, 30, "attempt 2 elsewhere")
    finally:
        os.killpg(frozen.pid, signal.SIGCONT)  # it wakes and kills attempt 1 for its hard time limit
    state = run.wait(30)
    print(f"a frozen worker's stale attempt hit its hard time limit while attempt 2 ran: run {state}")
    assert state == "succeeded"
    assert node()["result"] == {"attempt": 2}


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, which it stalls."""
    server = RedisServer(tmp_path / "redis", appendonly=False).start()
    yield server
    server.stop()


def test_an_eight_second_redis_stall_runs_no_node_twice(own_redis: RedisServer, tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "home",
        broker_url=own_redis.url,
        log_level="WARNING",
        agent_modules=tuple(SUPPORT_MODULES.split(",")),
    )
    app = create_app(settings)
    registry = Registry.from_url(settings.state_url)
    workers = own_pools(settings, ["counted"], tmp_path)
    try:
        for worker in workers:
            worker.wait_ready(registry)
        dag = Dag("stall")
        for name in ("a", "b", "c"):
            dag.node(name, "counted", params={"log": str(tmp_path / f"{name}.log"), "seconds": 12})
        run = submit(dag, app)
        # running, and each inside its agent's 12 s sleep (its line written): on a busy machine a node
        # can show running a while before its worker calls the agent, and the stall must land mid-call
        lines = [tmp_path / f"{name}.log" for name in ("a", "b", "c")]
        wait_for(
            lambda: run.progress()[0] == 0 and _running(run) == 3 and all(line.exists() for line in lines),
            30,
            "all three nodes to run",
        )
        assert own_redis.proc is not None
        os.kill(own_redis.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(8)  # the stall itself: nothing to await while Redis is frozen
        finally:
            os.kill(own_redis.proc.pid, signal.SIGCONT)
        state = run.wait(60)
        executions = {name: len((tmp_path / f"{name}.log").read_text().splitlines()) for name in ("a", "b", "c")}
        print(f"an 8 s Redis stall mid-run: run {state}, executions per node {executions}")
        again = [
            f for _, f in registry.client.xrange(keys.HISTORY) if f.get("run") == run.id and f["status"] == "requeued"
        ]
        print(f"nodes requeued during the stall: {again}")
        assert state == "succeeded"
        assert executions == {"a": 1, "b": 1, "c": 1}
        assert all(n["attempts"] == 1 for n in run.status()["nodes"].values())
    finally:
        stop_processes([worker.proc for worker in workers if worker.proc is not None], timeout=15)
        registry.client.close()
        app.close()


def _running(run: DagRun) -> int:
    return sum(1 for n in run.status()["nodes"].values() if n["status"] == "running")


def test_a_worker_killed_mid_foreach_re_runs_only_the_items_it_held(
    test_app: CoditectApp, worker_factory: WorkerFactory, registry: Registry, tmp_path: Path
) -> None:
    doomed = worker_factory(["counted"], concurrency=2, extra_env=SUPPORT_ENV)
    survivor = worker_factory(["counted"], concurrency=2, extra_env=SUPPORT_ENV)
    log = tmp_path / "executions.log"
    dag = Dag("fanout-kill")
    dag.node("fan", "counted", params={"log": str(log), "seconds": 6}, foreach=["a", "b", "c", "d"])
    run = submit(dag, test_app)
    workers = keys.run_prefix(run.id) + "worker"
    # All four items running (the node and its items hold a worker each) and each past its first line:
    # an item counted as held must have left its line before the kill, or it would re-run unseen.
    wait_for(
        lambda: len(registry.client.hgetall(workers)) == 5 and log.exists() and len(log.read_text().splitlines()) == 4,
        30,
        "all four items to run",
    )
    held = [f for f, host in registry.client.hgetall(workers).items() if "#" in f and host == doomed.hostname]
    os.killpg(doomed.pid, signal.SIGKILL)
    killed = time.monotonic()
    assert run.wait(60) == "succeeded"
    executions = sorted(line.split()[0] for line in log.read_text().splitlines())
    print(
        f"a worker holding {len(held)} of 4 foreach items SIGKILLed: {len(executions)} item executions, "
        f"run done {time.monotonic() - killed:.1f} s after the kill"
    )
    assert held and len(run.results()["fan"]) == 4, held
    assert len(executions) == 4 + len(held), (held, executions)  # only the items the dead worker held ran again
    left = list(registry.client.hgetall(workers))
    assert survivor.pid and left == ["fan"], left  # the items' own state is gone
