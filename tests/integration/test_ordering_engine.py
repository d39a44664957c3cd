"""The hand-off window and the engine's own order past it: priorities, fairness keys, critical path.
Real Redis; the scripts called as a worker calls them, messages popped as a consumer pops them."""

from __future__ import annotations

import json

import pytest

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import CoditectApp
from coditect_tasks.client import DagRun
from coditect_tasks.engine.transitions import Engine, engine_for
from coditect_tasks.errors import InvalidArgumentError, MalformedDagError
from coditect_tasks.registry import Registry

QUEUE = keys.agent_queue("echo")


def _on_queue(registry: Registry) -> list[str]:
    """(run name, node) of the messages on the queue, oldest first."""
    raw = registry.client.lrange(QUEUE, 0, -1)
    return [json.loads(json.loads(m)["body"])[1]["node_id"] for m in reversed(raw)]


def _take(engine: Engine, registry: Registry) -> str:
    """Pop the oldest message as a consumer does and begin it: the node it began."""
    message = json.loads(registry.client.rpop(QUEUE))
    kwargs = json.loads(message["body"])[1]
    taken = engine.begin(kwargs["run_id"], kwargs["node_id"], "w1", message["headers"]["id"])
    assert taken is not None
    return str(kwargs["node_id"])


def _leaves(app: CoditectApp, name: str, n: int, **submit_args: object) -> DagRun:
    dag = Dag(name)
    for i in range(n):
        dag.node(f"{name}{i}", "echo")
    return submit(dag, app, **submit_args)  # type: ignore[arg-type]


def test_past_the_window_nodes_wait_in_the_engine_and_go_as_workers_take_messages(
    app: CoditectApp, registry: Registry
) -> None:
    engine = engine_for(app.settings.state_url)
    engine.set_windows({QUEUE: 2})
    run = _leaves(app, "a", 5)
    assert _on_queue(registry) == ["a0", "a1"]
    assert {n["status"] for n in run.status()["nodes"].values()} == {"queued"}
    assert registry.client.hget(keys.FRONTIER, "demand|echo") == "5"  # more workers would help them all
    assert _take(engine, registry) == "a0"
    assert _on_queue(registry) == ["a1", "a2"]  # the take made room: the next went
    assert engine.set_windows({}) == 2  # no live worker: nothing bounds the queue, the rest go
    assert _on_queue(registry) == ["a1", "a2", "a3", "a4"]


def test_a_higher_priority_passes_the_nodes_waiting_past_the_window(app: CoditectApp, registry: Registry) -> None:
    engine = engine_for(app.settings.state_url)
    engine.set_windows({QUEUE: 1})
    _leaves(app, "low", 6, priority=2)
    dag = Dag("urgent")
    dag.node("hot", "echo", priority=9)  # a node's own priority wins over its submit's
    dag.node("warm", "echo")
    submit(dag, app, priority=8)
    order = [_take(engine, registry) for _ in range(4)]
    assert order == ["low0", "hot", "warm", "low1"]


def test_fairness_keys_of_one_priority_are_served_round_robin(app: CoditectApp, registry: Registry) -> None:
    engine = engine_for(app.settings.state_url)
    engine.set_windows({QUEUE: 1})
    _leaves(app, "a", 20, fairness_key="tenant-a")
    _leaves(app, "b", 3, fairness_key="tenant-b")
    order = [_take(engine, registry) for _ in range(8)]
    assert order == ["a0", "a1", "b0", "a2", "b1", "a3", "b2", "a4"]


def test_the_critical_path_goes_first_within_a_run(app: CoditectApp, registry: Registry) -> None:
    engine = engine_for(app.settings.state_url)
    engine.set_windows({QUEUE: 1})
    dag = Dag("critical")
    for i in range(3):
        dag.node(f"leaf{i}", "echo")
    dag.node("c0", "echo")
    dag.node("c1", "echo", after=["c0"])
    dag.node("c2", "echo", after=["c1"])
    run = submit(dag, app)
    assert _on_queue(registry) == ["leaf0"]  # the window was free: the first root went at once
    taken = _take(engine, registry)
    assert _on_queue(registry) == ["c0"]  # then the head of the longest path, before the other leaves
    engine.complete(run.id, taken, 1, "1")


def test_priority_and_fairness_key_are_checked(app: CoditectApp) -> None:
    with pytest.raises(InvalidArgumentError, match="priority must be a whole number from 0 to 9"):
        _leaves(app, "x", 1, priority=10)
    with pytest.raises(InvalidArgumentError, match="fairness_key must be a string of 1 to 256 characters"):
        _leaves(app, "x", 1, fairness_key="")
    with pytest.raises(MalformedDagError, match="node 'a': 'priority' must be a whole number from 0 to 9"):
        Dag.from_text("name: d\nnodes:\n  - {id: a, agent: echo, priority: high}\n")


def test_a_retry_keeps_its_runs_priority_and_fairness_key(app: CoditectApp, registry: Registry) -> None:
    engine = engine_for(app.settings.state_url)
    dag = Dag("flaky")
    dag.node("x", "echo")
    run = submit(dag, app, priority=7, fairness_key="tenant-a")
    taken = engine.begin(run.id, "x", "w1", f"{run.id}:x:1")
    assert taken is not None and engine.fail(run.id, "x", taken.token, "boom")
    again = run.retry()
    fields = registry.client.hmget(keys.run_prefix(again.id) + "run", "priority", "fair")
    assert fields == ["7", "tenant-a"]
