"""The platform's behaviours on the two Redis deployments that replicate (every submit waiting
for a replica): a primary that Sentinel watches (two replicas, three Sentinels; every role through
the one ``redis+sentinel://`` URL) and a Redis Cluster (three primaries, a replica each, 16 cells;
the broker a Redis of its own). Fan-out/fan-in with foreach, retries, events, cancel, retry from a
cancelled run, idempotency, the asyncio client, the CLI. On the cluster, how runs spread over its
cells (``cells.py``): runs land on every primary and read as one; a run that holds a limit lives in
cell 0, where the limit holds across runs; a spawned child stays in its tree's cell, and one that
would hold a limit outside cell 0 fails its node clearly. Their failovers: tests/chaos/test_failover.py."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from coditect_tasks import AsyncClient, Client, Dag, keys
from coditect_tasks.cells import summed
from coditect_tasks.connection import redis_client
from coditect_tasks.embedded import WorkerProcess
from coditect_tasks.history.recorder import Recorder
from coditect_tasks.history.store import HistoryStore
from coditect_tasks.load.scenario import default_dag
from coditect_tasks.redis_cluster import ClusterGroup
from coditect_tasks.redis_server import RedisServer, SentinelGroup, stop_processes
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

from ..conftest import ROOT, SUPPORT_ENV, run_cli, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("replicated")]  # one group for the module
#: The cluster of each cluster deployment's URL, for the tests that look at its primaries.
CLUSTERS: dict[str, ClusterGroup] = {}
#: A test on the cluster alone: of the module's deployments, the one of many cells.
ON_CLUSTER = pytest.mark.parametrize("replicated", ["cluster"], indirect=True)


@pytest.fixture(scope="module", params=["sentinel", "cluster"])
def replicated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings on a Sentinel group or a Redis Cluster, with a worker pool serving the examples."""
    folder = tmp_path_factory.mktemp(request.param)
    servers: list[SentinelGroup | ClusterGroup | RedisServer] = []
    try:
        if request.param == "sentinel":
            group = SentinelGroup(folder / "redis").start()
            servers.append(group)
            settings = Settings(home=folder / "home", broker_url=group.url, log_level="WARNING")
        else:
            cluster = ClusterGroup(folder / "cluster").start()
            servers.append(cluster)
            CLUSTERS[cluster.url] = cluster
            broker = RedisServer(folder / "broker").start()
            servers.append(broker)
            settings = Settings(home=folder / "home", broker_url=broker.url, redis_url=cluster.url, log_level="WARNING")
        worker = WorkerProcess(
            settings,
            ["echo", "emit", "flaky", "sleep", "noop", "pinned", "planner"],
            concurrency=2,
            log_path=folder / "worker.log",
            extra_env={"PYTHONPATH": str(ROOT), **SUPPORT_ENV},
        ).start()
        registry = Registry.from_url(settings.state_url)
        try:
            worker.wait_ready(registry, timeout=60)
            yield settings
        finally:
            registry.client.close()
            stop_processes([worker.proc] if worker.proc else [], timeout=10)
    finally:
        for server in servers:
            server.stop()


def cli_env(settings: Settings, home: Path) -> dict[str, str]:
    """What a user exports to reach the stack of ``settings``."""
    env = {"CODITECT_BROKER_URL": str(settings.broker_url), "CODITECT_HOME": str(home)}
    return {**env, "CODITECT_REDIS_URL": settings.redis_url} if settings.redis_url else env


def test_fan_out_retries_and_events(replicated: Settings) -> None:
    assert replicated.min_replicas == 1
    dag = Dag("through-sentinel")
    dag.node("items", "emit", params={"value": [1, 2, 3]})
    dag.node("each", "echo", foreach="items", after=["items"])
    dag.node("shaky", "flaky", params={"fail_times": 2})
    dag.wait("ci", "ci.finished", key="abc")
    dag.node("join", "echo", after=["each", "shaky", "ci"])
    with Client(replicated) as client:
        run = client.submit(dag)
        wait_for(lambda: run.status()["nodes"]["ci"]["status"] == "waiting", 30, "the wait to begin")
        assert client.send_event("ci.finished", key="abc", data={"green": True}) == 1
        assert run.wait(timeout=60) == "succeeded"
        nodes = run.status()["nodes"]
        assert [r["params"]["item"] for r in nodes["each"]["result"]] == [1, 2, 3]
        assert nodes["shaky"]["result"] == {"attempt": 3}


def test_cancel_retry_and_idempotency(replicated: Settings, tmp_path: Path) -> None:
    dag = Dag("long")
    dag.node("first", "echo")
    dag.sleep("pause", seconds=600, after=["first"])
    dag.node("last", "echo", after=["pause"])
    with Client(replicated) as client:
        run = client.submit(dag, idempotency_key="replicated-once")
        assert client.submit(dag, idempotency_key="replicated-once").id == run.id
        wait_for(lambda: run.status()["nodes"]["pause"]["status"] == "waiting", 30, "the sleep to begin")
        assert run.cancel() and run.wait(timeout=10) == "cancelled"
        retried = run.retry()  # keeps the node that succeeded, runs the rest again
        assert retried.status()["nodes"]["first"]["attempts"] == 0
        assert retried.status()["nodes"]["pause"]["status"] == "waiting"
        assert retried.cancel()


def test_the_asyncio_client_submits_and_waits(replicated: Settings) -> None:
    async def main() -> str:
        dag = Dag("async")
        dag.node("a", "echo")
        async with AsyncClient(replicated) as client:
            run = await client.submit(dag)
            return await run.wait(timeout=30)

    assert asyncio.run(main()) == "succeeded"


def test_the_cli_reads_and_writes_through_the_url(replicated: Settings, tmp_path: Path) -> None:
    env = cli_env(replicated, tmp_path / "home")
    dag = tmp_path / "d.yaml"
    dag.write_text("name: d\nnodes:\n  - {id: a, wait: {event: go, key: k}}\n")
    submitted = run_cli(["dag", "submit", str(dag), "--json"], env)
    assert submitted.returncode == 0, submitted.stderr
    sent = run_cli(["event", "send", "go", "--key", "k"], env)
    assert sent.returncode == 0 and "resolved 1" in sent.stdout, sent.stderr
    variable, url, problem = (
        ("CODITECT_BROKER_URL", "redis+sentinel://127.0.0.1:1", "no service name: end the URL with /<service>")
        if replicated.redis_url is None
        else ("CODITECT_REDIS_URL", "redis+cluster://127.0.0.1:1/0", "a cluster URL ends after its nodes")
    )
    bad = run_cli(["dag", "list"], {**env, variable: url})
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert variable in bad.stderr and problem in bad.stderr


def test_every_script_touches_the_keys_of_one_cell(replicated: Settings) -> None:
    """On a cluster every script's keys must sit on one node: a run's keys, and its cell's share of
    the global structures, share its cell's slot; the cells spread over every primary."""
    dag = Dag("slot")
    dag.node("items", "emit", params={"value": [1, 2]})
    dag.node("each", "echo", foreach="items", after=["items"])
    with Client(replicated) as client:
        runs = [client.submit(dag) for _ in range(8)]
        assert [run.wait(timeout=30) for run in runs] == ["succeeded"] * len(runs)
    state = redis_client(replicated.state_url)
    try:
        found = list(state.scan_iter(match=f"{keys.UNTAGGED_PREFIX}*", count=1000))
        assert len(found) > 10 and all(key.startswith(keys.UNTAGGED_PREFIX + "{") for key in found), found
        if replicated.redis_url is None:  # Sentinel: one Redis, one cell
            assert all(key.startswith(keys.PREFIX) for key in found) and replicated.cells == 1
            return
        assert replicated.cells == 16  # a cluster's default
        cells = {keys.cell_of(run.id) for run in runs}
        assert len(cells) > 1, cells  # 8 runs over 16 cells: one cell for all has odds of 16**-7
        for run in runs:  # each run's keys on its cell's slot
            slot = state.keyslot(keys.route(keys.cell_of(run.id)))  # type: ignore[attr-defined]
            assert {state.keyslot(key) for key in found if run.id in key} == {slot}  # type: ignore[attr-defined]
        slots = {state.keyslot(keys.route(cell)) for cell in range(replicated.cells)}  # type: ignore[attr-defined]
        assert {state.keyslot(key) for key in found} <= slots  # type: ignore[attr-defined]
        with pytest.raises(redis.RedisError, match="non local key"):  # what a key elsewhere would meet
            state.eval("return redis.call('GET', 'elsewhere:{1}')", 1, keys.ROUTE)
    finally:
        state.close()


def key_in_cell(cell: int, prefix: str) -> str:
    """An idempotency key (``prefix`` and a number) whose runs go to cell ``cell`` of 16 (unless
    they hold a limit)."""
    return next(f"{prefix}{n}" for n in range(10_000) if zlib.crc32(f"{prefix}{n}".encode()) % 16 == cell)


@ON_CLUSTER
def test_runs_spread_over_cells_on_every_primary_and_read_as_one(replicated: Settings) -> None:
    with Client(replicated) as client:
        runs = [client.submit(default_dag()) for _ in range(120)]
        assert [run.wait(timeout=120) for run in runs] == ["succeeded"] * len(runs)
        ids = {run.id for run in runs}
        # each primary holds a fair share of the runs' keys
        primaries = {CLUSTERS[str(replicated.redis_url)].primary_of(keys.route(cell)).port: cell for cell in range(16)}
        assert len(primaries) == 3
        held = {}
        for server in CLUSTERS[str(replicated.redis_url)].servers:
            if server.port in primaries:
                node = CLUSTERS[str(replicated.redis_url)].client(server)
                held[server.port] = sum(1 for key in node.scan_iter(match="coditect:*:run:*", count=1000))
                node.close()
        total = sum(held.values())
        assert all(count >= 0.2 * total for count in held.values()), held
        # read as one: the listing, a run's document and events, the counters
        listed = {row["run_id"] for row in client.runs(limit=200)}
        assert ids <= listed
        elsewhere = next(run for run in runs if keys.cell_of(run.id) != 0)
        assert elsewhere.status()["nodes"]["join"]["status"] == "succeeded"
        events = list(elsewhere.events())
        assert events[-1].terminal and events[-1].status == "succeeded"
        counters = summed(client.redis, keys.METRICS, replicated.cells)
        assert int(counters["runs|succeeded"]) >= len(runs)
        # the history has every transition of every run: the cells' streams number their entries
        # alike (the same millisecond in two cells), which must not make one pass for the other
        store = HistoryStore.from_settings(replicated)
        Recorder(client.redis, store, cells=replicated.cells).drain()
        recorded = {row["run_id"]: row["status"] for row in store.runs(500)}
        assert {run_id: recorded.get(run_id) for run_id in ids} == dict.fromkeys(ids, "succeeded")
        assert len(store.transitions(elsewhere.id)) == len(events)


@ON_CLUSTER
def test_a_run_that_holds_a_limit_lives_in_cell_0_where_the_limit_holds(replicated: Settings) -> None:
    dag = Dag("limited")
    dag.node("work", "pinned", params={"repo": "cells", "seconds": 1.0})
    with Client(replicated) as client:
        runs = [client.submit(dag, idempotency_key=key_in_cell(5 + i, "limited-")) for i in range(4)]
        assert {keys.cell_of(run.id) for run in runs} == {0}  # whatever their keys' cells

        def held() -> list[dict[str, object]]:
            limit = next(limit for limit in client.limits() if limit["name"] == "repo-slots")
            return [entry for entry in limit["keys"] if entry["key"] == "cells"]

        wait_for(lambda: held() and held()[0]["in_use"] == 2 and held()[0]["waiting"] == 2, 30, "two held, two waiting")
        assert [run.wait(timeout=60) for run in runs] == ["succeeded"] * 4


@ON_CLUSTER
def test_children_stay_in_their_trees_cell_and_a_limit_outside_cell_0_fails_the_spawn(
    replicated: Settings,
) -> None:
    with Client(replicated) as client:
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


@ON_CLUSTER
def test_an_idempotency_key_names_one_run_in_its_cell(replicated: Settings) -> None:
    key = key_in_cell(3, "once-")
    with Client(replicated) as client:
        first = client.submit(default_dag(), idempotency_key=key)
        again = client.submit(default_dag(), idempotency_key=key)
        assert first.id == again.id and keys.cell_of(first.id) == 3
        assert first.wait(timeout=30) == "succeeded"
