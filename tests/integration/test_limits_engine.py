"""Limits in the engine's scripts: taken before a message is queued, freed where an attempt ends, the
oldest waiter first. Real Redis; the scripts called as a worker calls them (no worker processes)."""

from __future__ import annotations

import json
import time

import pytest

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import CoditectApp
from coditect_tasks.client import DagRun
from coditect_tasks.engine.events import Event
from coditect_tasks.engine.transitions import Engine, engine_for
from coditect_tasks.errors import DagError
from coditect_tasks.history.recorder import Recorder
from coditect_tasks.limits import Limit
from coditect_tasks.observability.metrics import PlatformCollector
from coditect_tasks.registry import Registry

from ..support.marks import message_seq


def _queued(registry: Registry, agent: str = "echo") -> list[str]:
    """Node ids of the messages on the agent's queue, oldest first."""
    raw = registry.client.lrange(keys.agent_queue(agent), 0, -1)
    return [json.loads(json.loads(m)["body"])[1]["node_id"] for m in reversed(raw)]


def _fan_in(app: CoditectApp, repos: list[str], limits: list[str], name: str = "limited") -> DagRun:
    dag = Dag(name)
    for i, repo in enumerate(repos):
        dag.node(f"n{i}", "echo", params={"repo": repo, "tokens": 1}, limits=limits)
    return submit(dag, app)


def _run_node(engine: Engine, run: DagRun, node: str) -> None:
    seq = message_seq(engine.client, run.id, node)
    taken = engine.begin(run.id, node, "w1", f"{run.id}:{node}:{seq}")
    assert taken is not None, f"{node} could not begin"
    engine.complete(run.id, node, taken.token, "1")


def test_a_keyed_concurrency_limit_holds_each_key_to_its_count_and_lets_the_oldest_waiter_go(
    app: CoditectApp, registry: Registry
) -> None:
    engine = engine_for(app.settings.state_url)
    engine.declare_limit("repo", Limit("repo", concurrency=1, key="repo").to_json())
    run = _fan_in(app, ["a", "a", "b", "a"], ["repo"])
    assert _queued(registry) == ["n0", "n2"]  # one per repo; n1 and n3 wait for repo a
    doc = run.status()
    assert doc["nodes"]["n1"]["status"] == "queued"
    assert doc["nodes"]["n1"]["throttled"] == {"limit": "repo", "key": "a"}
    assert registry.client.hget(keys.FRONTIER, "demand|echo") == "2"  # waiters are no demand
    registry.client.delete(keys.agent_queue("echo"))
    _run_node(engine, run, "n0")  # frees repo a in the same script: n1 (the older waiter) goes
    assert _queued(registry) == ["n1"]
    assert "throttled" not in run.status()["nodes"]["n1"]
    (limit,) = engine.limits("repo")
    assert {k["key"]: (k["in_use"], k["waiting"]) for k in limit["keys"]} == {"a": (1, 1), "b": (1, 0)}
    for node in ("n1", "n2", "n3"):
        _run_node(engine, run, node)
    assert run.status()["status"] == "succeeded"
    assert engine.limits("repo")[0]["keys"] == []  # nothing held, nothing waits


def test_a_node_takes_all_of_its_limits_or_none(app: CoditectApp, registry: Registry) -> None:
    engine = engine_for(app.settings.state_url)
    engine.declare_limit("one", Limit("one", concurrency=1).to_json())
    engine.declare_limit("two", Limit("two", concurrency=2).to_json())
    first = _fan_in(app, ["a"], ["one"], "first")  # holds one
    both = _fan_in(app, ["a"], ["two", "one"], "both")  # takes two? no: one is full, so neither
    assert _queued(registry) == ["n0"]
    (two,) = engine.limits("two")
    assert two["keys"] == []  # no partial hold of 'two'
    assert both.status()["nodes"]["n0"]["throttled"] == {"limit": "one", "key": ""}
    registry.client.delete(keys.agent_queue("echo"))
    _run_node(engine, first, "n0")
    assert _queued(registry) == ["n0"]
    _run_node(engine, both, "n0")
    assert both.status()["status"] == "succeeded"


def test_a_rate_limit_charges_units_and_holds_the_rest_until_its_window_frees_them(
    app: CoditectApp, registry: Registry
) -> None:
    engine = engine_for(app.settings.state_url)
    engine.declare_limit("tokens", Limit("tokens", rate=5, per=0.5, units="tokens").to_json())
    dag = Dag("rated")
    for i, tokens in enumerate([2, 3, 4, 1]):
        dag.node(f"n{i}", "echo", params={"tokens": tokens}, limits=["tokens"])
    run = submit(dag, app)
    assert _queued(registry) == ["n0", "n1"]  # 2 + 3 = 5 units; n2's 4 would pass the window's 5
    assert run.status()["nodes"]["n3"]["throttled"] == {"limit": "tokens", "key": ""}  # n3 does not pass n2
    due = engine.pace()
    assert due is not None and 0 < due <= 0.5
    deadline = time.monotonic() + 2
    while due is not None:  # the window frees n0's and n1's units: n2 and n3 go (4 + 1)
        assert time.monotonic() < deadline
        time.sleep(due)
        due = engine.pace()
    assert _queued(registry) == ["n0", "n1", "n2", "n3"]


def test_an_operator_change_holds_from_the_next_dispatch_and_lets_waiters_go(
    app: CoditectApp, registry: Registry
) -> None:
    engine = engine_for(app.settings.state_url)
    engine.declare_limit("repo", Limit("repo", concurrency=2, key="repo").to_json())
    assert engine.set_limit("repo", {"concurrency": 1}) == {"concurrency": 1, "key": "repo", "per": 1}
    run = _fan_in(app, ["a"] * 4, ["repo"])
    assert _queued(registry) == ["n0"]
    assert engine.set_limit("repo", {"concurrency": 3})["concurrency"] == 3
    assert _queued(registry) == ["n0", "n1", "n2"]  # the waiters the change makes room for go at once
    assert engine.unset_limit("repo") == {"concurrency": 2, "key": "repo", "per": 1}  # the declared one again
    assert engine.limits("repo")[0]["changed"] is False
    registry.client.delete(keys.agent_queue("echo"))
    _run_node(engine, run, "n0")
    assert _queued(registry) == []  # 2 still hold repo a: n3 waits
    _run_node(engine, run, "n1")
    assert _queued(registry) == ["n3"]


def test_cancel_frees_the_limits_of_queued_nodes_and_drops_their_waits(app: CoditectApp, registry: Registry) -> None:
    engine = engine_for(app.settings.state_url)
    engine.declare_limit("repo", Limit("repo", concurrency=1, key="repo").to_json())
    run = _fan_in(app, ["a", "a"], ["repo"], "cancelled")
    other = _fan_in(app, ["a"], ["repo"], "other")
    assert run.cancel()
    runs = [
        json.loads(json.loads(m)["body"])[1]["run_id"] for m in registry.client.lrange(keys.agent_queue("echo"), 0, -1)
    ]
    assert runs.count(other.id) == 1 and other.status()["nodes"]["n0"]["status"] == "queued"
    assert "throttled" not in other.status()["nodes"]["n0"]  # the cancelled run's slot went to it
    assert engine.limits("repo")[0]["keys"] == [{"key": "a", "in_use": 1, "waiting": 0, "units": 0, "oldest_wait": 0}]


def test_a_retry_in_backoff_holds_no_slot(app: CoditectApp, registry: Registry) -> None:
    engine = engine_for(app.settings.state_url)
    engine.declare_limit("repo", Limit("repo", concurrency=1, key="repo").to_json())
    run = _fan_in(app, ["a", "a"], ["repo"])
    taken = engine.begin(run.id, "n0", "w1", f"{run.id}:n0:1")
    assert taken is not None
    assert engine.retry(run.id, "n0", taken.token, "flaky", 30.0)
    assert run.status()["nodes"]["n1"].get("throttled") is None  # n1 took the slot n0 let go


def test_an_unknown_limit_or_a_missing_key_is_a_validation_error_naming_the_node(
    app: CoditectApp, registry: Registry
) -> None:
    engine = engine_for(app.settings.state_url)
    engine.declare_limit("repo", Limit("repo", concurrency=1, key="repo").to_json())
    dag = Dag("bad")
    dag.node("n0", "echo", limits=["openai"])
    with pytest.raises(DagError, match=r"node 'n0': unknown limit 'openai' \(known: repo\)"):
        submit(dag, app)
    dag = Dag("bad")
    dag.node("n0", "echo", limits=["repo"])
    with pytest.raises(DagError, match=r"node 'n0': limit 'repo' is per params\['repo'\]"):
        submit(dag, app)
    assert registry.client.zcard(keys.RUNS) == 0  # nothing was written


def test_the_exporter_serves_what_each_limit_holds(app: CoditectApp, registry: Registry) -> None:
    engine = engine_for(app.settings.state_url)
    engine.declare_limit("repo", Limit("repo", concurrency=1, key="repo").to_json())
    _fan_in(app, ["a", "a", "a", "b"], ["repo"])
    collector = PlatformCollector(registry.client, app.settings.require_broker(), ["echo"])
    samples = {
        (metric.name, sample.labels.get("limit")): sample.value
        for metric in collector.collect()
        if metric.name.startswith("coditect_limit")
        for sample in metric.samples
    }
    assert samples[("coditect_limit_in_use", "repo")] == 2  # a and b
    assert samples[("coditect_limit_waiting", "repo")] == 2
    assert samples[("coditect_limit_oldest_wait_seconds", "repo")] > 0


def test_a_throttled_event_names_its_limit_and_key_live_and_once_recorded(
    app: CoditectApp, registry: Registry, recorder: Recorder
) -> None:
    engine = engine_for(app.settings.state_url)
    engine.declare_limit("repo", Limit("repo", concurrency=1, key="repo").to_json())
    run = _fan_in(app, ["x/y", "x/y"], ["repo"])
    live = [(e.node, e.detail) for e in _events_until(run, "throttled")]
    assert live == [("n1", {"limit": "repo", "key": "x/y"})]
    recorder.drain()
    assert registry.client.xlen(keys.HISTORY) == 0  # what follows is read from the database
    recorded = [(e.node, e.detail) for e in _events_until(run, "throttled")]
    assert recorded == live


def _events_until(run: DagRun, status: str) -> list[Event]:
    """The run's events so far with ``status`` (the stream would wait for more: read what is there)."""
    found = []
    for event in run.events():
        if event.status == status:
            found.append(event)
        if event.node == "n1" and event.status == status:
            return found
    return found


def test_a_node_queued_again_after_its_message_was_lost_keeps_its_slot(app: CoditectApp, registry: Registry) -> None:
    engine = engine_for(app.settings.state_url)
    engine.declare_limit("repo", Limit("repo", concurrency=1, key="repo").to_json())
    run = _fan_in(app, ["a", "a"], ["repo"])
    # a worker received n0's message, noted it, and died before it began
    registry.client.sadd(keys.reserved("gone"), "@epoch:e1")
    assert engine.reserve("gone", "e1", [(run.id, "n0", f"{run.id}:n0:1")]) == 1
    registry.client.delete(keys.agent_queue("echo"))  # the message died with it
    assert engine.reclaim_lost(grace=0) == 1
    assert _queued(registry) == ["n0"]  # queued again, at once: it never let its slot go
    (limit,) = engine.limits("repo")
    assert [(k["in_use"], k["waiting"]) for k in limit["keys"]] == [(1, 1)]
    _run_node(engine, run, "n0")
    _run_node(engine, run, "n1")
    assert run.status()["status"] == "succeeded"


def test_a_rate_waiter_blocked_again_leaves_the_pacer_asleep_until_its_window_frees(
    app: CoditectApp, registry: Registry
) -> None:
    engine = engine_for(app.settings.state_url)
    engine.declare_limit("tokens", Limit("tokens", rate=5, per=0.6, units="tokens").to_json())
    for name, tokens in (("first", 2), ("second", 3), ("third", 4)):
        dag = Dag(name)
        dag.node("n", "echo", params={"tokens": tokens}, limits=["tokens"])
        submit(dag, app)
        time.sleep(0.25 if name == "first" else 0)  # the second charge comes a quarter second later
    due = engine.pace()
    assert due is not None and due > 0.2
    time.sleep(due)
    due = engine.pace()  # the first charge expired: 3 units in the window, the waiter needs 4 of 5
    assert due is not None and due > 0.1, "the pacer would spin until the second charge expires"
    assert len(_queued(registry)) == 2


def test_a_cancelled_runs_foreach_item_frees_its_slot_when_it_ends_after_the_run_retired(
    app: CoditectApp, registry: Registry
) -> None:
    engine = engine_for(app.settings.state_url)
    engine.declare_limit("one", Limit("one", concurrency=1).to_json())
    dag = Dag("fan")
    dag.node("f", "echo", foreach=[1, 2], limits=["one"])
    run = submit(dag, app)
    taken = engine.begin(run.id, "f", "w1", f"{run.id}:f:1")
    assert taken is not None and engine.fan_out(run.id, "f", taken.token, taken.record, [1, 2])
    item = engine.begin(run.id, "f#0", "w1", f"{run.id}:f#0:1")
    assert item is not None
    assert run.cancel()
    assert engine.retire(run.id, 0)  # recorded: but an item still runs, so its state stays
    engine.complete(run.id, "f#0", item.token, "1")
    assert engine.limits("one")[0]["keys"] == []  # its slot is free
