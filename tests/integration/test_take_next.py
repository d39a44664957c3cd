"""A pool process that finishes a node takes the next message of its queue itself (``TakeNext``):
what it takes and what it leaves, the count of Celery tasks that a fan-out costs, and a hard
time limit of a node taken that way. Real Redis and real worker processes."""

from __future__ import annotations

import dataclasses
import json
import random
import time
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import CoditectApp, create_app
from coditect_tasks.bench import fanout
from coditect_tasks.client import DagRun
from coditect_tasks.engine import transitions
from coditect_tasks.engine.taken import TakeNext
from coditect_tasks.engine.transitions import Engine, engine_for
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

from ..conftest import WorkerFactory, wait_for

QUEUE = keys.agent_queue("echo")


def _roots(app: CoditectApp, *nodes: tuple[str, float | None]) -> DagRun:
    dag = Dag("roots")
    for node, timeout in nodes:
        dag.node(node, "echo", timeout=timeout)
    return submit(dag, app)


def _first(engine: Engine, run: DagRun, node: str) -> str:
    """Pop the queue's oldest message as the consumer would, and begin its node: its task id."""
    message = json.loads(engine.client.rpop(QUEUE))
    assert json.loads(message["body"])[1]["node_id"] == node
    task_id = str(message["headers"]["id"])
    assert engine.begin(run.id, node, "w1", task_id) is not None
    return task_id


def _take_next(app: CoditectApp, task_id: str, timeout: float | None = None) -> TakeNext:
    hard, soft = (repr(float(limit)) for limit in app.agents["echo"].time_limits(timeout))
    breaker = keys.breaker_prefix("echo")
    return TakeNext(QUEUE, QUEUE, hard, soft, "w1", breaker, task_id, 60, time.monotonic() + 60)


def test_a_success_takes_the_oldest_message_of_its_queue_and_notes_it(app: CoditectApp) -> None:
    run = _roots(app, ("a", None), ("b", None), ("c", None))
    engine = engine_for(app.settings.state_url)
    via = _first(engine, run, "a")
    ok, after = engine.succeed(run.id, "a", 1, {"a": 1}, take_next=_take_next(app, via))
    assert ok and after is not None
    assert (after.run_id, after.node_id, after.task_id) == (run.id, "b", f"{run.id}:b:1")
    assert after.taken.token == 1 and after.taken.breaker is not None
    assert engine.taken_after(via) == (run.id, "b", f"{run.id}:b:1")
    assert engine.client.llen(QUEUE) == 1  # c waits for the consumer or the next follow
    nodes = run.status()["nodes"]
    assert [nodes[n]["status"] for n in "abc"] == ["succeeded", "running", "queued"]
    assert nodes["b"]["worker"] == "w1"


def test_a_node_taken_next_begins_when_the_script_takes_it_not_when_its_caller_stamped_the_call(
    app: CoditectApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process held up between finishing a node and its call would date the next node's start
    before that node's message was queued (a limit's slots then seemed overfull in the history)."""
    run = _roots(app, ("a", None), ("b", None))
    engine = engine_for(app.settings.state_url)
    via = _first(engine, run, "a")
    held_up = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="microseconds")
    monkeypatch.setattr(transitions, "now", lambda: held_up)
    before = datetime.now(UTC)
    ok, after = engine.succeed(run.id, "a", 1, None, take_next=_take_next(app, via))
    assert ok and after is not None and after.node_id == "b"
    nodes = run.status()["nodes"]
    assert nodes["a"]["finished_at"] == held_up  # the caller's stamp: when the agent returned
    started = nodes["b"]["started_at"]
    assert before <= datetime.fromisoformat(started) <= datetime.now(UTC)
    assert started == datetime.fromisoformat(started).isoformat(timespec="microseconds")


def test_the_scripts_write_a_time_as_the_engine_does(registry: Registry) -> None:
    """server_iso (common/base.lua) against Python's isoformat, at 2,000 instants from 1970 to 2100,
    leap days and century ends among them."""
    base = (resources.files("coditect_tasks.engine") / "lua" / "common" / "base.lua").read_text()
    function = base[
        base.index("local function server_iso()") : base.index("\n\n", base.index("local function server_iso()"))
    ]
    script = function.replace("redis.call('TIME')", "{ARGV[1], ARGV[2]}") + "\nreturn server_iso()"
    rng = random.Random(37)
    instants = [0, 86399, 86400, 951782400, 951868800, 1709164800, 4102444799]
    instants += [rng.randrange(0, 4_102_444_800) for _ in range(2000)]
    for secs in instants:
        micros = rng.randrange(1_000_000)
        want = datetime.fromtimestamp(secs, UTC).replace(microsecond=micros).isoformat(timespec="microseconds")
        assert registry.client.eval(script, 0, secs, micros) == want, secs


def test_other_time_limits_or_a_plain_call_stay_where_they_were(app: CoditectApp) -> None:
    run = _roots(app, ("a", None), ("t", 5.0), ("u", None), ("v", None))
    engine = engine_for(app.settings.state_url)
    via = _first(engine, run, "a")
    before = engine.client.lrange(QUEUE, 0, -1)  # t (the oldest), u, v
    ok, after = engine.succeed(run.id, "a", 1, None, take_next=_take_next(app, via))
    assert ok and after is None  # t's message carries other time limits: Celery runs it
    assert engine.client.lrange(QUEUE, 0, -1) == before  # back at the oldest end, the rest in order
    via = _first(engine, run, "t")
    app.send_task(QUEUE, kwargs={"params": {"plain": True}}, queue=QUEUE)
    engine.client.lmove(QUEUE, QUEUE, "LEFT", "RIGHT")  # the plain call is now the oldest, before u and v
    before = engine.client.lrange(QUEUE, 0, -1)
    ok, after = engine.succeed(run.id, "t", 1, None, take_next=_take_next(app, via, timeout=5.0))
    assert ok and after is None  # a plain call needs Celery's task machinery
    assert engine.client.lrange(QUEUE, 0, -1) == before
    assert [run.status()["nodes"][n]["status"] for n in "tuv"] == ["succeeded", "queued", "queued"]


def test_a_take_next_drops_a_message_that_must_not_run_and_crosses_runs(app: CoditectApp) -> None:
    first = _roots(app, ("a", None), ("b", None))
    second = _roots(app, ("x", None))
    engine = engine_for(app.settings.state_url)
    via = _first(engine, first, "a")
    assert first.cancel()  # b will never run: its message is dropped, as begin drops it
    ok, after = engine.succeed(first.id, "a", 1, None, take_next=_take_next(app, via))
    assert ok and after is not None and (after.run_id, after.node_id) == (second.id, "x")
    assert engine.client.llen(QUEUE) == 0
    assert first.status()["nodes"]["b"]["status"] == "cancelled"
    assert second.status()["nodes"]["x"] == {**second.status()["nodes"]["x"], "status": "running", "worker": "w1"}
    assert engine.taken_after(via) == (second.id, "x", after.task_id)


def test_a_fan_out_needs_fewer_celery_tasks_than_nodes(
    app: CoditectApp, registry: Registry, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(["noop"], concurrency=1)
    run = submit(fanout(300), app)
    assert run.wait(60) == "succeeded"
    stats = app.control.inspect(destination=[worker.hostname], timeout=5).stats() or {}
    tasks = stats[worker.hostname]["total"].get(keys.agent_queue("noop"), 0)
    print(f"300 nodes ran in {tasks} Celery tasks")
    assert 1 <= tasks < 300
    assert {n["status"] for n in run.status()["nodes"].values()} == {"succeeded"}


def test_a_hard_time_limit_fails_the_node_taken_after_the_message(
    settings: Settings, worker_factory: WorkerFactory
) -> None:
    modules = "workers.examples,tests.support.agents"
    app = create_app(dataclasses.replace(settings, agent_modules=tuple(modules.split(","))))
    dag = Dag("follow-limit")
    dag.node("quick", "steadfast", params={"seconds": 0})
    dag.node("slow", "steadfast", params={"seconds": 30})
    worker = worker_factory(["steadfast"], extra_env={"CODITECT_AGENT_MODULES": modules})
    state = engine_for(settings.state_url).client
    # the heartbeat registers the worker, then writes its queue's hand-off window: before the window,
    # both roots would go to the queue at once and the second process take slow's message itself
    wait_for(lambda: state.hget(keys.WINDOWS, keys.agent_queue("steadfast")) is not None, 10, "the queue's window")
    run = submit(dag, app)
    assert run.wait(20) == "failed"
    nodes = run.status()["nodes"]
    assert nodes["quick"]["status"] == "succeeded"
    assert nodes["slow"]["error"] == "hard time limit of 2 s exceeded"
    assert nodes["slow"]["attempts"] == 1  # failed in place, not requeued after its lease lapsed
    stats = app.control.inspect(destination=[worker.hostname], timeout=5).stats() or {}
    assert stats[worker.hostname]["total"] == {keys.agent_queue("steadfast"): 1}  # slow rode on quick's
    app.close()


def test_a_completion_that_leaves_successors_to_queue_takes_no_next_node(app: CoditectApp) -> None:
    """It queues them first, a slice a call: a node it took meanwhile would wait with its lease running."""
    dag = Dag("wide")
    dag.node("root", "echo")
    for i in range(keys.READY_SLICE + 3):
        dag.node(f"w{i}", "echo", after=["root"])
    run = submit(dag, app)
    engine = engine_for(app.settings.state_url)
    via = _first(engine, run, "root")
    ok, after = engine.succeed(run.id, "root", 1, None, take_next=_take_next(app, via))
    assert ok and after is None
    assert engine.client.llen(QUEUE) == keys.READY_SLICE + 3  # every successor queued before it returned
    assert {n["status"] for nid, n in run.status()["nodes"].items() if nid != "root"} == {"queued"}
