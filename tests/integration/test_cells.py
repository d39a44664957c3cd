"""Run state spread over a Redis Cluster's cells (``cells.py``): three primaries with a replica
each, 16 cells, a broker Redis of its own, one worker pool. Runs land on every primary and read as
one; a run that holds a limit lives in cell 0, where the limit holds across runs; a spawned child
stays in its tree's cell, and one that would hold a limit outside cell 0 fails its node clearly."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from coditect_tasks import Client, Dag, keys
from coditect_tasks.cells import summed
from coditect_tasks.embedded import WorkerProcess
from coditect_tasks.redis_cluster import ClusterGroup
from coditect_tasks.redis_server import RedisServer, stop_processes
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

from ..conftest import ROOT, SUPPORT_ENV, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("cells")]


@dataclass
class Cells:
    settings: Settings
    cluster: ClusterGroup


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cells]:
    folder = tmp_path_factory.mktemp("cells")
    cluster = ClusterGroup(folder / "cluster").start()
    broker = RedisServer(folder / "broker").start()
    try:
        settings = Settings(home=folder / "home", broker_url=broker.url, redis_url=cluster.url, log_level="WARNING")
        assert settings.cells == 16  # a cluster's default
        worker = WorkerProcess(
            settings,
            ["echo", "noop", "pinned", "planner"],
            concurrency=4,
            log_path=folder / "worker.log",
            extra_env={"PYTHONPATH": str(ROOT), **SUPPORT_ENV},
        ).start()
        registry = Registry.from_url(settings.state_url)
        try:
            worker.wait_ready(registry, timeout=60)
            yield Cells(settings, cluster)
        finally:
            registry.client.close()
            stop_processes([worker.proc] if worker.proc else [], timeout=10)
    finally:
        broker.stop()
        cluster.stop()


def diamond(name: str) -> Dag:
    dag = Dag(name)
    dag.node("a", "echo")
    dag.node("b", "noop", after=["a"])
    dag.node("c", "noop", after=["a"])
    dag.node("d", "echo", after=["b", "c"])
    return dag


def key_in_cell(cell: int, prefix: str) -> str:
    """An idempotency key (``prefix`` and a number) whose runs go to cell ``cell`` of 16 (unless
    they hold a limit)."""
    return next(f"{prefix}{n}" for n in range(10_000) if zlib.crc32(f"{prefix}{n}".encode()) % 16 == cell)


def test_runs_spread_over_every_primary_and_read_as_one(cells: Cells) -> None:
    with Client(cells.settings) as client:
        runs = [client.submit(diamond(f"spread-{i}")) for i in range(120)]
        assert [run.wait(timeout=120) for run in runs] == ["succeeded"] * len(runs)
        ids = {run.id for run in runs}
        # each primary holds a fair share of the runs' keys
        primaries = {cells.cluster.primary_of(keys.route(cell)).port: cell for cell in range(16)}
        assert len(primaries) == 3
        held = {}
        for server in cells.cluster.servers:
            if server.port in primaries:
                node = cells.cluster.client(server)
                held[server.port] = sum(1 for key in node.scan_iter(match="coditect:*:run:*", count=1000))
                node.close()
        total = sum(held.values())
        assert all(count >= 0.2 * total for count in held.values()), held
        # read as one: the listing, a run's document and events, the counters
        listed = {row["run_id"] for row in client.runs(limit=200)}
        assert ids <= listed
        elsewhere = next(run for run in runs if keys.cell_of(run.id) != 0)
        assert elsewhere.status()["nodes"]["d"]["status"] == "succeeded"
        events = list(elsewhere.events())
        assert events[-1].terminal and events[-1].status == "succeeded"
        counters = summed(client.redis, keys.METRICS, cells.settings.cells)
        assert int(counters["runs|succeeded"]) >= len(runs)


def test_a_run_that_holds_a_limit_lives_in_cell_0_where_the_limit_holds(cells: Cells) -> None:
    dag = Dag("limited")
    dag.node("work", "pinned", params={"repo": "cells", "seconds": 1.0})
    with Client(cells.settings) as client:
        runs = [client.submit(dag, idempotency_key=key_in_cell(5 + i, "limited-")) for i in range(4)]
        assert {keys.cell_of(run.id) for run in runs} == {0}  # whatever their keys' cells

        def held() -> list[dict[str, object]]:
            limit = next(limit for limit in client.limits() if limit["name"] == "repo-slots")
            return [entry for entry in limit["keys"] if entry["key"] == "cells"]

        wait_for(lambda: held() and held()[0]["in_use"] == 2 and held()[0]["waiting"] == 2, 30, "two held, two waiting")
        assert [run.wait(timeout=60) for run in runs] == ["succeeded"] * 4


def test_children_stay_in_their_trees_cell_and_a_limit_outside_cell_0_fails_the_spawn(cells: Cells) -> None:
    with Client(cells.settings) as client:
        plan = Dag("plan")
        plan.node("plan", "planner", params={"children": 2})
        run = client.submit(plan, idempotency_key=key_in_cell(7, "plan-"))
        assert keys.cell_of(run.id) == 7 and run.wait(timeout=60) == "succeeded"
        children = run.status()["nodes"]["plan"]["children"]
        assert len(children) == 2 and {keys.cell_of(child) for child in children} == {7}

        limited = Dag("plan-limited")
        limited.node("plan", "planner", params={"children": 1, "leaf": "pinned", "leaf_params": {"repo": "x"}})
        refused = client.submit(limited, idempotency_key=key_in_cell(9, "plan-limited-"))
        assert refused.wait(timeout=60) == "failed"
        error = refused.status()["nodes"]["plan"]["error"]
        assert "holds limit(s) repo-slots, but its tree is in cell 9" in error, error


def test_an_idempotency_key_names_one_run_in_its_cell(cells: Cells) -> None:
    key = key_in_cell(3, "once-")
    with Client(cells.settings) as client:
        first = client.submit(diamond("once"), idempotency_key=key)
        again = client.submit(diamond("once"), idempotency_key=key)
        assert first.id == again.id and keys.cell_of(first.id) == 3
        assert first.wait(timeout=30) == "succeeded"
