"""Chaos of a backlog: retries wait behind it without being taken for lost, and the reaper's
check of queued nodes costs the same whatever the backlog. Each test prints its figure."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from pathlib import Path

import pytest

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import CoditectApp
from coditect_tasks.engine.transitions import engine_for
from coditect_tasks.registry import Registry

from ..conftest import SUPPORT_ENV, WorkerFactory

pytestmark = pytest.mark.chaos


def test_a_retry_behind_a_backlog_runs_exactly_as_often_as_its_policy_says(
    test_app: CoditectApp, worker_factory: WorkerFactory, registry: Registry, tmp_path: Path
) -> None:
    worker_factory(["backlogged"], concurrency=1, extra_env=SUPPORT_ENV)
    log = tmp_path / "executions.log"
    dag = Dag("backlog")
    dag.node("bad", "backlogged", params={"log": str(log), "fail": True})
    # 20 s of work queued behind the first attempt's retry: longer than the queued check (15 s)
    for index in range(20):
        dag.node(f"slow{index}", "backlogged", params={"log": str(log), "seconds": 1})
    run = submit(dag, test_app)
    assert run.wait(90) == "failed"
    executions = Counter(log.read_text().split())
    print(f"a node failing 3 times behind a 20 s backlog: {executions['bad']} execution(s)")
    assert executions["bad"] == 3  # retries=2: three attempts, none taken for lost
    assert run.status()["nodes"]["bad"]["attempts"] == 3
    lost = [f for _, f in registry.client.xrange(keys.HISTORY) if f["status"] == "requeued"]
    assert lost == []


def _queue(app: CoditectApp, runs: int, nodes: int) -> None:
    for r in range(runs):
        dag = Dag(f"queued{r}")
        for n in range(nodes):
            dag.node(f"n{n}", "echo")
        submit(dag, app)


def _check_cost(app: CoditectApp, registry: Registry, queued: int) -> float:
    """Seconds of Redis time of one check of a queue with ``queued`` nodes waiting on it."""
    _queue(app, max(1, queued // 5000), min(queued, 5000))
    engine = engine_for(app.settings.state_url)
    engine.reap()  # the first reap after a pause only extends leases (outage rule)
    queue = keys.agent_queue("echo")
    assert registry.client.xlen(keys.SENT_PREFIX + queue) == queued  # each message is watched
    assert registry.client.zrange(keys.WATCHED, 0, -1) == [queue]  # by one watch of its queue
    costs = []
    for _ in range(20):
        registry.client.zadd(keys.WATCHED, {queue: 0})  # the check is due now
        started = time.perf_counter()
        assert engine.reap(limit=1000) == []  # nothing is lost: every message is in its queue
        costs.append(time.perf_counter() - started)
    assert registry.client.zscore(keys.WATCHED, queue) > time.time()  # checked: not due again yet
    return statistics.median(costs)


def test_the_reapers_check_of_queued_nodes_costs_the_same_whatever_the_backlog(
    test_app: CoditectApp, registry: Registry
) -> None:
    small, large = [], []
    for _ in range(3):
        registry.client.flushall()
        small.append(_check_cost(test_app, registry, 200))
        registry.client.flushall()
        large.append(_check_cost(test_app, registry, 10_000))
    at_small, at_large = statistics.median(small), statistics.median(large)
    print(
        f"reaper check of a queue: {at_small * 1e6:.0f} µs with 200 nodes queued on it, "
        f"{at_large * 1e6:.0f} µs with 10k (medians of 3)"
    )
    assert at_large < 3 * at_small  # reading each queued node's message would be 50 times


def test_a_foreach_waiting_behind_a_backlog_runs_each_item_once(
    test_app: CoditectApp, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    worker_factory(["backlogged"], concurrency=1, extra_env=SUPPORT_ENV)
    log = tmp_path / "executions.log"
    dag = Dag("fanout-backlog")
    dag.node("fan", "backlogged", params={"log": str(log)}, foreach=["x", "y", "z"])
    # queued behind the fan-out's launch and ahead of its items: work longer than a lease and two
    # of the reaper's checks of queued messages, each with its second look (an item it took for
    # lost would run twice)
    wall = 2 * keys.QUEUED_CHECK_SECONDS + keys.LEASE_SECONDS + 1
    dag.node("wall", "backlogged", params={"log": str(log), "seconds": wall})
    run = submit(dag, test_app)
    assert run.wait(wall + 60) == "succeeded"
    executions = Counter(log.read_text().split())
    print(f"a 3-item foreach behind a {wall:.0f} s backlog: {executions['fan']} item execution(s)")
    assert executions == {"fan": 3, "wall": 1}
    assert run.status()["nodes"]["fan"]["result"] == [{"slept": 0.0}] * 3
