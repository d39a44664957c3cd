"""Resilience on real processes: failover, circuit breakers, poison input."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import pytest

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import CoditectApp
from coditect_tasks.embedded import WorkerProcess
from coditect_tasks.engine.transitions import engine_for
from coditect_tasks.settings import Settings

from ..conftest import SUPPORT_ENV, WorkerFactory, run_cli, wait_for
from ..support.marks import message_seq

pytestmark = pytest.mark.integration


def _workers(factory: WorkerFactory, agents: list[str], **kwargs: object) -> object:
    return factory(agents, extra_env=SUPPORT_ENV, **kwargs)


def test_a_sigkilled_workers_node_runs_again_elsewhere_within_ten_seconds(
    app: CoditectApp, worker_factory: WorkerFactory
) -> None:
    node = failover_after_sigkill(app, [worker_factory(["sleep", "echo"]), worker_factory(["sleep", "echo"])], "Redis")
    assert "lease expired" in node["error"]


def failover_after_sigkill(app: CoditectApp, workers: Sequence[WorkerProcess], broker: str) -> dict[str, Any]:
    """SIGKILL the worker running a 2 s node: it must run again on another within 10 s and the run
    succeed. Returns the node's final record (shared by the Redis and RabbitMQ tests)."""
    pool = {w.hostname: w for w in workers}
    dag = Dag("failover")
    dag.node("long", "sleep", params={"seconds": 2})
    dag.node("after", "echo", after=["long"])
    run = submit(dag, app)
    wait_for(lambda: run.status()["nodes"]["long"]["status"] == "running", 20, "the node to start")
    victim = run.status()["nodes"]["long"]["worker"]
    pool[victim].kill(group=True)
    killed = time.monotonic()
    wait_for(lambda: run.status()["nodes"]["long"]["attempts"] == 2, 15, "the node to run again")
    recovery = time.monotonic() - killed
    print(f"failover on {broker}: node running again {recovery:.2f} s after SIGKILL of its worker")
    assert recovery < 10
    assert run.wait(30) == "succeeded"
    node: dict[str, Any] = run.status()["nodes"]["long"]
    assert node["worker"] != victim
    assert node["attempts"] == 2
    return node


def test_an_open_breaker_sends_nodes_to_the_fallback_until_a_probe_closes_it(
    test_app: CoditectApp, settings: Settings, worker_factory: WorkerFactory
) -> None:
    _workers(worker_factory, ["wobbly", "echo"])
    failing = Dag("trip")
    failing.node("w", "wobbly", params={"fail": True})
    for _ in range(2):  # two consecutive failures open it (a failed run starts nothing new: two runs)
        assert submit(failing, test_app).wait(20) == "failed"
    tripped = time.monotonic()
    healthy = Dag("fallback")
    healthy.node("w3", "wobbly", params={"fail": False})
    run = submit(healthy, test_app)
    assert run.wait(20) == "succeeded"
    print(f"breaker: trip to fallback result in {time.monotonic() - tripped:.3f} s")
    listed = run_cli(
        ["agents", "--json"],
        {"CODITECT_BROKER_URL": settings.require_broker(), **SUPPORT_ENV},
    )
    assert json.loads(listed.stdout)["agents"]["wobbly"]["breaker"] == "open"
    node = run.status()["nodes"]["w3"]
    assert node["agent"] == "echo"
    assert node["result"] == {"params": {"fail": False}, "upstream": {}}
    counters = engine_for(test_app.settings.state_url).client.hgetall(keys.METRICS)
    assert counters["nodes|wobbly|rerouted"] == "1"  # the rerouted attempt was wobbly's, not echo's
    assert "nodes|echo|rerouted" not in counters

    time.sleep(2.0)  # the breaker's reset timeout: the next call is the half-open probe
    probe = submit(healthy, test_app)
    assert probe.wait(20) == "succeeded"
    assert probe.results() == {"w3": {"wobbly": "ok"}}
    listed = run_cli(
        ["agents", "--json"],
        {"CODITECT_BROKER_URL": settings.require_broker(), **SUPPORT_ENV},
    )
    assert json.loads(listed.stdout)["agents"]["wobbly"]["breaker"] == "closed"


def test_without_a_fallback_an_open_breaker_fails_fast(test_app: CoditectApp, worker_factory: WorkerFactory) -> None:
    _workers(worker_factory, ["fragile"])
    dag = Dag("fragile")
    dag.node("f", "fragile")
    assert [submit(dag, test_app).wait(20) for _ in range(2)] == ["failed", "failed"]
    second = Dag("fragile-again")
    second.node("a", "fragile")
    second.node("b", "fragile")
    run = submit(second, test_app)
    assert run.wait(20) == "failed"
    errors = {n["error"] for n in run.status()["nodes"].values() if n["status"] == "failed"}
    assert "circuit open for agent 'fragile'" in errors


def test_a_worker_keeps_no_note_of_messages_it_has_begun(test_app: CoditectApp, worker_factory: WorkerFactory) -> None:
    """Notes of received messages are written by a thread, so one may arrive after its node
    began (and removed the note): it must be refused, or the set would grow for the worker's
    whole life and vouch for messages nobody holds."""
    _workers(worker_factory, ["noop"], concurrency=2)
    dag = Dag("notes")
    for i in range(200):
        dag.node(f"n{i}", "noop")
    assert submit(dag, test_app).wait(60) == "succeeded"
    client = engine_for(test_app.settings.state_url).client

    def notes() -> list[str]:
        return [m for key in client.scan_iter(keys.RESERVED_PREFIX + "*") for m in client.smembers(key)]

    wait_for(lambda: notes() and all(m.startswith("@epoch:") for m in notes()), 10, "only epoch markers left")


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("not-json", "result is not JSON-serialisable"),
        ("huge", "over the limit of 8388608"),
        ("raise", "ValueError: poison raises on every attempt"),
    ],
)
def test_poison_fails_its_node_and_other_runs_carry_on(
    test_app: CoditectApp, worker_factory: WorkerFactory, kind: str, error: str
) -> None:
    _workers(worker_factory, ["poison", "echo", "sleep"], concurrency=2)
    bad = Dag("poisoned")
    bad.node("p", "poison", params={"kind": kind}, retries=1)
    good = Dag("healthy")
    good.node("a", "sleep", params={"seconds": 0.3})
    good.node("b", "echo", after=["a"])
    runs = [submit(good, test_app), submit(bad, test_app)]
    assert [r.wait(30) for r in runs] == ["succeeded", "failed"]
    assert error in runs[1].status()["nodes"]["p"]["error"]


def test_submit_to_an_unreachable_broker_is_one_line_and_submits_nothing(tmp_path: object) -> None:
    result = run_cli(
        ["dag", "submit", "examples/release.yaml"],
        {"CODITECT_BROKER_URL": "redis://127.0.0.1:1/0", "CODITECT_CONNECT_TIMEOUT": "1"},
    )
    assert result.returncode == 3
    assert (
        result.stderr.strip() == "coditect-tasks: error: cannot reach redis://127.0.0.1:1/0: "
        "Error 111 connecting to 127.0.0.1:1. Connection refused."
    )


def test_a_message_held_by_a_worker_that_died_before_beginning_is_queued_again(app: CoditectApp) -> None:
    """The reclaim path on a real Redis: no worker serves ``sleep`` here, so the node stays
    queued while a worker that no longer exists is noted as holding its message."""
    dag = Dag("reclaim")
    dag.node("held", "sleep", params={"seconds": 0})
    run = submit(dag, app)
    engine = engine_for(app.settings.state_url)
    queue = keys.agent_queue("sleep")
    assert engine.client.llen(queue) == 1
    message = f"{run.id}:held:{message_seq(engine.client, run.id, 'held')}"
    engine.client.sadd(keys.reserved("ghost@nowhere"), "@epoch:e1")  # what its start wrote
    assert engine.reserve("ghost@nowhere", "e0", [(run.id, "held", message)]) == 0  # an earlier epoch's
    assert engine.reserve("ghost@nowhere", "e1", [(run.id, "held", message + "0")]) == 0  # not its message
    assert engine.reserve("ghost@nowhere", "e1", [(run.id, "held", message)]) == 1
    engine.client.zadd(keys.RESERVERS, {"ghost@nowhere": 0})  # it noted the message long ago
    assert engine.reclaim_lost(grace=6) == 1
    node = run.status()["nodes"]["held"]
    assert (node["status"], node["error"]) == ("queued", "message lost with worker ghost@nowhere before it began")
    assert engine.client.llen(queue) == 2
    assert engine.client.hget(keys.METRICS, "failovers|sleep") == "1"
    assert not engine.client.exists(keys.reserved("ghost@nowhere"))
    assert engine.reclaim_lost(grace=6) == 0  # forgotten once handled


def test_a_message_popped_by_a_consumer_that_died_unnoted_is_queued_again_after_a_second_look(
    app: CoditectApp,
) -> None:
    """The reaper's check of a queue, on a real Redis (no worker serves ``sleep`` here): of three
    messages popped, the one a live worker noted stays as it is and the begun one leaves the watch;
    the one popped by a consumer that died before noting it is queued again, once, a lease length
    after it was first seen missing. The message still on the queue is not judged."""
    dag = Dag("popped")
    for n in range(4):
        dag.node(f"n{n}", "sleep", params={"seconds": 0})
    run = submit(dag, app)
    engine = engine_for(app.settings.state_url)
    client, queue = engine.client, keys.agent_queue("sleep")
    sent = keys.SENT_PREFIX + queue
    assert client.xlen(sent) == 4 and client.zscore(keys.WATCHED, queue) is not None
    assert client.zcard(keys.WATCHES) == 0  # one watch a queue, none a message
    popped = [json.loads(client.rpop(queue)) for _ in range(3)]
    (lost, lost_id), (noted, noted_id), (begun, begun_id) = (
        (json.loads(m["body"])[1]["node_id"], m["headers"]["id"]) for m in popped
    )
    client.set(keys.worker("alive@here"), "{}")  # a live worker's description
    client.sadd(keys.reserved("alive@here"), "@epoch:e1")
    assert engine.reserve("alive@here", "e1", [(run.id, noted, noted_id)]) == 1
    assert engine.begin(run.id, begun, "alive@here", begun_id) is not None
    engine.reap()  # the first reap after a pause only extends leases (outage rule)
    member = f"{run.id}|{lost}|{lost_id.rsplit(':', 1)[1]}"

    client.zadd(keys.WATCHED, {queue: 0})  # the queue's check is due
    assert engine.reap() == []  # a first look: its consumer may be noting it right now
    assert list(client.hgetall(keys.LOOKED)) == [member]
    assert client.xlen(sent) == 3  # the begun message left the watch
    client.zadd(keys.WATCHED, {queue: 0})
    assert engine.reap() == []  # less than a lease length since: not yet
    client.hset(keys.LOOKED, member, 0)  # a lease length later
    client.zadd(keys.WATCHED, {queue: 0})
    assert engine.reap() == [member]
    node = run.status()["nodes"][lost]
    assert (node["status"], node["error"]) == ("queued", "message lost in transit; queued again")
    assert client.hget(keys.METRICS, "failovers|sleep") == "1"
    assert client.llen(queue) == 2 and not client.exists(keys.LOOKED)  # the waiting one and the new one
    client.zadd(keys.WATCHED, {queue: 0})
    assert engine.reap() == []  # the noted one is its worker's; nothing else is lost
    assert run.status()["nodes"][noted]["status"] == "queued"


def test_a_watch_the_previous_release_kept_per_message_is_still_judged(app: CoditectApp) -> None:
    """Rolling upgrades: a node the previous release queued has a watch of its own (``WATCHES``),
    and no entry in its queue's stream; the reaper still finds its message lost and queues it again."""
    dag = Dag("legacy-watch")
    dag.node("only", "sleep", params={"seconds": 0})
    run = submit(dag, app)
    engine = engine_for(app.settings.state_url)
    client, queue = engine.client, keys.agent_queue("sleep")
    client.delete(keys.SENT_PREFIX + queue)  # as the previous release queued it: no stream entry
    client.zrem(keys.WATCHED, queue)
    engine.reap()  # the first reap after a pause only extends leases (outage rule)
    client.zadd(keys.WATCHES, {f"{run.id}|only|q": 0})
    assert engine.reap() == []  # still on its queue: watched again later
    assert client.zscore(keys.WATCHES, f"{run.id}|only|q") > time.time()
    client.rpop(queue)  # popped by a consumer that died before noting it
    client.zadd(keys.WATCHES, {f"{run.id}|only|q": 0})
    assert engine.reap() == []  # a first look
    assert client.zrange(keys.WATCHES, 0, -1) == [f"{run.id}|only|l"]
    client.zadd(keys.WATCHES, {f"{run.id}|only|l": 0})  # a lease length later
    assert engine.reap() == [f"{run.id}|only|l"]
    assert run.status()["nodes"]["only"]["error"] == "message lost in transit; queued again"
    assert client.llen(queue) == 1 and client.xlen(keys.SENT_PREFIX + queue) == 1  # watched the new way now
