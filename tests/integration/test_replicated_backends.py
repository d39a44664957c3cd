"""The platform's behaviours on the two Redis deployments that replicate (every submit waiting
for a replica): a primary that Sentinel watches (two replicas, three Sentinels; every role through
the one ``redis+sentinel://`` URL) and a Redis Cluster (three primaries, a replica each; the broker
a Redis of its own). Fan-out/fan-in with foreach, retries, events, cancel, retry from a cancelled
run, idempotency, the asyncio client, the CLI. Their failovers: tests/chaos/test_failover.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from coditect_tasks import AsyncClient, Client, Dag, keys
from coditect_tasks.connection import redis_client
from coditect_tasks.embedded import WorkerProcess
from coditect_tasks.redis_cluster import ClusterGroup
from coditect_tasks.redis_server import RedisServer, SentinelGroup, stop_processes
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

from ..conftest import ROOT, SUPPORT_ENV, run_cli, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("replicated")]  # one group for the module


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
            broker = RedisServer(folder / "broker").start()
            servers.append(broker)
            settings = Settings(home=folder / "home", broker_url=broker.url, redis_url=cluster.url, log_level="WARNING")
        worker = WorkerProcess(
            settings,
            ["echo", "emit", "flaky", "sleep"],
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
