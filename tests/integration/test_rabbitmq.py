"""DAG runs on a real RabbitMQ (Debian's rabbitmq-server, started by the test as a plain process).

Run state stays in the session's Redis; node messages go from the engine's outbox to RabbitMQ's
quorum queues through the workers' drainers (worker/outbox.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import amqp
import pytest
from kombu import Connection

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import CoditectApp, create_app
from coditect_tasks.embedded import WorkerProcess
from coditect_tasks.engine.transitions import engine_for
from coditect_tasks.rabbitmq_server import RabbitServer, rabbitmq_installed
from coditect_tasks.redis_server import stop_processes
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

from ..conftest import ROOT, SUPPORT_ENV, SUPPORT_MODULES, missing, wait_for
from .test_resilience import failover_after_sigkill

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("rabbitmq")]  # one server for the module


@pytest.fixture(scope="module")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitServer]:
    if not rabbitmq_installed():
        missing("rabbitmq-server not installed (apt-get install rabbitmq-server)")
    server = RabbitServer(tmp_path_factory.mktemp("rabbitmq")).start()
    yield server
    server.stop()


@pytest.fixture
def on_rabbitmq(settings: Settings, rabbitmq: RabbitServer) -> Settings:
    """RabbitMQ as the broker, the session Redis (emptied) for run state."""
    return dataclasses.replace(
        settings, broker_url=rabbitmq.url, redis_url=settings.state_url, agent_modules=tuple(SUPPORT_MODULES.split(","))
    )


@pytest.fixture
def amqp_app(on_rabbitmq: Settings) -> Iterator[CoditectApp]:
    app = create_app(on_rabbitmq)
    yield app
    app.close()


@pytest.fixture
def amqp_workers(on_rabbitmq: Settings, registry: Registry, tmp_path: Path) -> Iterator[object]:
    started: list[WorkerProcess] = []

    def start(agents: Sequence[str], concurrency: int = 1) -> WorkerProcess:
        worker = WorkerProcess(
            on_rabbitmq,
            agents,
            concurrency=concurrency,
            log_path=tmp_path / f"worker-{len(started) + 1}.log",
            extra_env={"PYTHONPATH": str(ROOT), **SUPPORT_ENV},
        ).start()
        started.append(worker)
        worker.wait_ready(registry, timeout=60)
        return worker

    yield start
    stop_processes([worker.proc for worker in started if worker.proc is not None], timeout=10)


def _depth(url: str, queue: str) -> int:
    with Connection(url) as conn:
        return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)


def test_a_dag_with_a_fan_out_runs_on_rabbitmq_through_the_outbox(
    amqp_app: CoditectApp, amqp_workers: object, rabbitmq: RabbitServer
) -> None:
    amqp_workers(["emit", "echo"], concurrency=2)  # type: ignore[operator]
    dag = Dag("rabbit")
    dag.node("plan", "emit", params={"value": ["a", "b", "c"]})
    dag.node("each", "echo", foreach="plan", after=["plan"])
    dag.node("left", "echo", params={"side": "left"}, after=["plan"])
    dag.node("join", "echo", after=["each", "left"])
    run = submit(dag, amqp_app)
    assert run.wait(30) == "succeeded"
    results = run.results()
    assert [item["params"]["item"] for item in results["each"]] == ["a", "b", "c"]
    assert set(results["join"]["upstream"]) == {"each", "left"}

    client = engine_for(amqp_app.settings.state_url).client
    assert not client.keys(keys.AGENT_QUEUE_PREFIX + "*")  # no message went through a Redis list
    assert client.llen(keys.OUTBOX) == 0
    assert not client.keys(keys.OUTBOX_HELD_PREFIX + "*")  # every entry confirmed and dropped
    assert _depth(rabbitmq.url, "agents.echo") == 0
    with Connection(rabbitmq.url) as conn, pytest.raises(amqp.exceptions.PreconditionFailed, match="x-queue-type"):
        conn.default_channel.queue_declare(
            queue="agents.echo", durable=True, auto_delete=False
        )  # classic: refused, it is a quorum queue


def test_a_sigkilled_workers_node_runs_again_elsewhere_within_ten_seconds_on_rabbitmq(
    amqp_app: CoditectApp, amqp_workers: object
) -> None:
    workers = [amqp_workers(["sleep", "echo"]), amqp_workers(["sleep", "echo"])]  # type: ignore[operator]
    failover_after_sigkill(amqp_app, workers, "RabbitMQ")


def test_entries_a_dead_drainer_held_are_published_again_and_a_duplicate_runs_nothing_twice(
    amqp_app: CoditectApp, amqp_workers: object, rabbitmq: RabbitServer, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    dag = Dag("outbox")
    dag.node("once", "waiter", params={"gate": str(gate)})
    run = submit(dag, amqp_app)  # no worker yet: the message waits in the outbox
    client = engine_for(amqp_app.settings.state_url).client
    (entry,) = client.lrange(keys.OUTBOX, 0, -1)
    assert entry.startswith("agents.waiter\n")
    # a drainer that took the entry, may have published it, and died before dropping it
    ghost = "ghost@nowhere"
    client.rpush(keys.outbox_held(ghost), entry)
    client.zadd(keys.RESERVERS, {ghost: 0})
    amqp_workers(["waiter"], concurrency=2)  # type: ignore[operator]
    wait_for(lambda: not client.exists(keys.outbox_held(ghost)), 30, "the dead drainer's entries to go back")
    # both copies reach the pool while the first holds the node (the gate is shut): one is dropped
    wait_for(lambda: client.hget(keys.METRICS, "duplicates|waiter") == "1", 30, "the second copy to be dropped")
    gate.touch()
    assert run.wait(30) == "succeeded"
    assert run.status()["nodes"]["once"]["attempts"] == 1
    assert client.llen(keys.OUTBOX) == 0
    assert _depth(rabbitmq.url, "agents.waiter") == 0


def test_a_plain_agent_call_retries_after_its_backoff_on_quorum_queues(
    amqp_app: CoditectApp, amqp_workers: object
) -> None:
    amqp_workers(["flaky"])  # type: ignore[operator]
    # the retries are Celery countdowns: on quorum queues, its native delayed delivery
    result = amqp_app.tasks["agents.flaky"].apply_async(kwargs={"params": {"fail_times": 2}})
    assert result.get(timeout=30) == {"attempt": 3}
