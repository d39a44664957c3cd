"""Chaos: real worker processes killed, Redis killed and restarted, a worker cut off, added latency.

Each test prints its figures (recovery seconds, nodes lost, duplicated).
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import CoditectApp, create_app
from coditect_tasks.chaos.proxy import ChaosProxy
from coditect_tasks.client import DagRun
from coditect_tasks.embedded import WorkerProcess
from coditect_tasks.redis_server import RedisServer, stop_processes
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

from ..conftest import ROOT, WorkerFactory, own_pools, wait_for

pytestmark = pytest.mark.chaos


def _succeeded_counts(client: redis.Redis, run_id: str) -> Counter[str]:
    """How many times the history stream recorded each node of ``run_id`` as succeeded."""
    counts: Counter[str] = Counter()
    for _, fields in client.xrange(keys.HISTORY):
        if fields.get("run") == run_id and fields.get("node") and fields.get("status") == "succeeded":
            counts[fields["node"]] += 1
    return counts


def _report(run: DagRun, client: redis.Redis, nodes: int) -> tuple[int, int, int]:
    """(lost, duplicated, re-executed) for a finished run; prints them."""
    doc = run.status()
    counts = _succeeded_counts(client, run.id)
    lost = nodes - sum(1 for n in doc["nodes"].values() if n["status"] == "succeeded")
    duplicated = sum(c - 1 for c in counts.values() if c > 1)
    reexecuted = sum(n["attempts"] - 1 for n in doc["nodes"].values())
    print(f"nodes lost: {lost}, duplicated effects: {duplicated}, re-executed attempts: {reexecuted}")
    stuck = {
        nid: (n["status"], n["attempts"], n["worker"]) for nid, n in doc["nodes"].items() if n["status"] != "succeeded"
    }
    if stuck:
        print(f"not succeeded: {dict(list(stuck.items())[:10])}")
    return lost, duplicated, reexecuted


def _layered(name: str, width: int, depth: int, seconds: float) -> Dag:
    """``width`` parallel chains of ``depth`` sleep nodes, every layer joined to the previous one's neighbour."""
    dag = Dag(name)
    for layer in range(depth):
        for lane in range(width):
            after = [f"n{layer - 1}_{lane}", f"n{layer - 1}_{(lane + 1) % width}"] if layer else []
            dag.node(f"n{layer}_{lane}", "sleep", params={"seconds": seconds}, after=list(dict.fromkeys(after)))
    return dag


def test_twenty_worker_kills_over_a_500_node_run(
    app: CoditectApp, settings: Settings, worker_factory: WorkerFactory, registry: Registry
) -> None:
    workers = [worker_factory(["sleep"], concurrency=2) for _ in range(3)]
    run = submit(_layered("kills", width=50, depth=10, seconds=0.1), app)
    kills, stop = 0, threading.Event()
    rng = random.Random(7)

    def killer() -> None:
        nonlocal kills
        while kills < 20 and not stop.is_set():
            victim = rng.choice([w for w in workers if w.alive()])
            victim.kill(group=True)
            kills += 1
            workers.append(worker_factory(["sleep"], concurrency=2, wait=False))
            stop.wait(1.0)

    thread = threading.Thread(target=killer, daemon=True)
    started = time.monotonic()
    thread.start()
    state = run.wait(240)
    stop.set()
    thread.join()
    print(f"500-node run under {kills} worker SIGKILLs: {state} in {time.monotonic() - started:.1f} s")
    lost, duplicated, _ = _report(run, registry.client, 500)
    assert kills == 20
    assert state == "succeeded"
    assert (lost, duplicated) == (0, 0)


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, with AOF on, that the test kills and restarts."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def test_redis_sigkill_and_restart_mid_run(durable_redis: RedisServer, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", broker_url=durable_redis.url, log_level="WARNING")
    app = create_app(settings)
    registry = Registry.from_url(settings.state_url)
    workers = own_pools(settings, ["sleep", "echo"], tmp_path)
    try:
        for worker in workers:
            worker.wait_ready(registry)
        runs = [submit(_layered(f"restart-{i}", width=4, depth=8, seconds=0.2), app) for i in range(5)]
        wait_for(lambda: sum(r.progress()[0] for r in runs) >= 20, 30, "the runs to get going")
        durable_redis.kill()
        time.sleep(1.0)
        durable_redis.start()
        restarted = time.monotonic()
        states = [r.wait(120) for r in runs]
        print(
            f"Redis SIGKILL + restart: all {len(runs)} runs {set(states)} "
            f"{time.monotonic() - restarted:.1f} s after the restart"
        )
        reports = [_report(run, registry.client, 32)[:2] for run in runs]
        assert states == ["succeeded"] * len(runs)
        assert reports == [(0, 0)] * len(runs)
        # Known, intermittent: kombu's Redis transport can crash a worker while it closes the
        # lost connection (AttributeError in restore_unacked); the runs still finish on the other
        # worker. A crashed worker must have said so; every other one must register again.
        wait_for(
            lambda: {w.hostname for w in workers if w.alive()} <= {r.hostname for r in registry.workers()},
            15,
            "the live workers to register again",
        )
        crashed = [w for w in workers if not w.alive()]
        for worker in crashed:
            assert worker.log_path is not None and "Unrecoverable error" in worker.log_path.read_text()
        print(f"workers crashed by the broker loss (kombu): {len(crashed)} of {len(workers)}")
        assert len(crashed) < len(workers)
    finally:
        stop_processes([worker.proc for worker in workers if worker.proc is not None], timeout=15)
        registry.client.close()
        app.close()


def _through(proxy: ChaosProxy, settings: Settings) -> Settings:
    return dataclasses.replace(settings, broker_url=proxy.url(settings.require_broker()))


def test_a_ten_second_partition_of_one_worker(
    app: CoditectApp,
    settings: Settings,
    redis_server: RedisServer,
    worker_factory: WorkerFactory,
    registry: Registry,
    tmp_path: Path,
) -> None:
    proxy = ChaosProxy(redis_server.port).start()
    try:
        cut = WorkerProcess(
            _through(proxy, settings),
            ["sleep"],
            concurrency=2,
            log_path=tmp_path / "cut.log",
            extra_env={"PYTHONPATH": str(ROOT)},
        ).start()
        cut.wait_ready(registry)
        worker_factory(["sleep"], concurrency=2)
        run = submit(_layered("partition", width=4, depth=6, seconds=1.0), app)
        wait_for(
            lambda: any(
                n["worker"] == cut.hostname and n["status"] == "running" for n in run.status()["nodes"].values()
            ),
            30,
            "the cut-off worker to take a node",
        )
        victims = {
            nid for nid, n in run.status()["nodes"].items() if n["worker"] == cut.hostname and n["status"] == "running"
        }
        proxy.partition(10.0)
        cut_at = time.monotonic()
        wait_for(
            lambda: all(run.status()["nodes"][v]["attempts"] >= 2 for v in victims),
            15,
            "the cut-off worker's nodes to run elsewhere",
        )
        print(f"partition: {len(victims)} node(s) running elsewhere {time.monotonic() - cut_at:.2f} s after the cut")
        assert run.wait(90) == "succeeded"
        assert _report(run, registry.client, 24)[:2] == (0, 0)
        wait_for(lambda: cut.hostname in {w.hostname for w in registry.workers()}, 30, "the worker to come back")
    finally:
        cut.stop()
        proxy.stop()


def test_a_hundred_milliseconds_of_added_latency(
    settings: Settings, redis_server: RedisServer, registry: Registry, tmp_path: Path
) -> None:
    proxy = ChaosProxy(redis_server.port, latency=0.1).start()
    slow_settings = _through(proxy, settings)
    app = create_app(slow_settings)
    worker = WorkerProcess(
        slow_settings,
        ["sleep", "echo"],
        concurrency=2,
        log_path=tmp_path / "slow.log",
        extra_env={"PYTHONPATH": str(ROOT)},
    ).start()
    try:
        worker.wait_ready(registry, timeout=60)
        dag = _layered("latency", width=3, depth=4, seconds=0.05)
        started = time.monotonic()
        run = submit(dag, app)
        assert run.wait(120) == "succeeded"
        edges = [n for n in run.status()["nodes"].values() if n["status"] == "succeeded"]
        print(f"100 ms latency: 12-node run in {time.monotonic() - started:.2f} s")
        assert len(edges) == 12
        assert _report(run, registry.client, 12)[:2] == (0, 0)
    finally:
        worker.stop()
        app.close()
        proxy.stop()
