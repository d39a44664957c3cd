"""The platform's behaviours on a Redis that Sentinel watches (a primary, two replicas, three
Sentinels; one worker pool), every role through the one ``redis+sentinel://`` URL and every
submit waiting for a replica: fan-out/fan-in with foreach, retries, events, cancel, retry from a
cancelled run, idempotency, the asyncio client, the CLI. The failover itself: tests/chaos/test_sentinel.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from coditect_tasks import AsyncClient, Client, Dag
from coditect_tasks.embedded import WorkerProcess
from coditect_tasks.redis_server import SentinelGroup, stop_processes
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

from ..conftest import ROOT, SUPPORT_ENV, run_cli, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("sentinel")]  # one group for the module


@pytest.fixture(scope="module")
def on_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings on a Sentinel group, with a worker pool serving the examples, for the module."""
    folder = tmp_path_factory.mktemp("sentinel")
    group = SentinelGroup(folder / "redis").start()
    settings = Settings(home=folder / "home", broker_url=group.url, log_level="WARNING")
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
        group.stop()


def test_fan_out_retries_and_events_run_through_sentinel(on_sentinel: Settings) -> None:
    assert on_sentinel.min_replicas == 1
    dag = Dag("through-sentinel")
    dag.node("items", "emit", params={"value": [1, 2, 3]})
    dag.node("each", "echo", foreach="items", after=["items"])
    dag.node("shaky", "flaky", params={"fail_times": 2})
    dag.wait("ci", "ci.finished", key="abc")
    dag.node("join", "echo", after=["each", "shaky", "ci"])
    with Client(on_sentinel) as client:
        run = client.submit(dag)
        wait_for(lambda: run.status()["nodes"]["ci"]["status"] == "waiting", 30, "the wait to begin")
        assert client.send_event("ci.finished", key="abc", data={"green": True}) == 1
        assert run.wait(timeout=60) == "succeeded"
        nodes = run.status()["nodes"]
        assert [r["params"]["item"] for r in nodes["each"]["result"]] == [1, 2, 3]
        assert nodes["shaky"]["result"] == {"attempt": 3}


def test_cancel_retry_and_idempotency_through_sentinel(on_sentinel: Settings, tmp_path: Path) -> None:
    dag = Dag("long")
    dag.node("first", "echo")
    dag.sleep("pause", seconds=600, after=["first"])
    dag.node("last", "echo", after=["pause"])
    with Client(on_sentinel) as client:
        run = client.submit(dag, idempotency_key="sentinel-once")
        assert client.submit(dag, idempotency_key="sentinel-once").id == run.id
        wait_for(lambda: run.status()["nodes"]["pause"]["status"] == "waiting", 30, "the sleep to begin")
        assert run.cancel() and run.wait(timeout=10) == "cancelled"
        retried = run.retry()  # keeps the node that succeeded, runs the rest again
        assert retried.status()["nodes"]["first"]["attempts"] == 0
        assert retried.status()["nodes"]["pause"]["status"] == "waiting"
        assert retried.cancel()


def test_the_asyncio_client_submits_and_waits_through_sentinel(on_sentinel: Settings) -> None:
    async def main() -> str:
        dag = Dag("async")
        dag.node("a", "echo")
        async with AsyncClient(on_sentinel) as client:
            run = await client.submit(dag)
            return await run.wait(timeout=30)

    assert asyncio.run(main()) == "succeeded"


def test_the_cli_reads_and_writes_through_a_sentinel_url(on_sentinel: Settings, tmp_path: Path) -> None:
    env = {"CODITECT_BROKER_URL": str(on_sentinel.broker_url), "CODITECT_HOME": str(tmp_path / "home")}
    dag = tmp_path / "d.yaml"
    dag.write_text("name: d\nnodes:\n  - {id: a, wait: {event: go, key: k}}\n")
    submitted = run_cli(["dag", "submit", str(dag), "--json"], env)
    assert submitted.returncode == 0, submitted.stderr
    sent = run_cli(["event", "send", "go", "--key", "k"], env)
    assert sent.returncode == 0 and "resolved 1" in sent.stdout, sent.stderr
    bad = run_cli(["dag", "list"], {**env, "CODITECT_BROKER_URL": "redis+sentinel://127.0.0.1:1"})
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "CODITECT_BROKER_URL" in bad.stderr and "no service name: end the URL with /<service>" in bad.stderr
