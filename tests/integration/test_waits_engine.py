"""Waiting nodes in the engine's scripts: events (name, key, lookback), approvals, sleeps and
timeouts, holding no worker. Real Redis; the pacer's script called as the pacer calls it."""

from __future__ import annotations

import time

import pytest

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import CoditectApp
from coditect_tasks.client import Client
from coditect_tasks.engine.transitions import engine_for
from coditect_tasks.errors import DagError, MalformedDagError, RunStateError
from coditect_tasks.registry import Registry


def _pace_until(app: CoditectApp, done: object, timeout: float) -> float:
    """Call the pacer's script until ``done()``; the seconds it took."""
    engine, started = engine_for(app.settings.state_url), time.monotonic()
    while not done():  # type: ignore[operator]
        assert time.monotonic() - started < timeout, "timed out"
        engine.pace()
        time.sleep(0.02)
    return time.monotonic() - started


def test_an_event_resolves_only_the_waits_of_its_name_and_key(app: CoditectApp, registry: Registry) -> None:
    dag = Dag("ci")
    dag.wait("ci", "ci.finished", key="{sha}", params={"sha": "abc"})
    dag.node("after", "echo", after=["ci"])
    run = submit(dag, app)
    doc = run.status()
    assert doc["nodes"]["ci"]["status"] == "waiting" and doc["nodes"]["ci"]["awaits"] == {
        "event": "ci.finished",
        "key": "abc",
    }
    assert registry.client.llen(keys.agent_queue("echo")) == 0  # nothing for a worker yet
    client = Client.of(app)
    assert client.send_event("ci.finished", key="def", data={"ok": False}) == 0  # another key
    assert client.send_event("ci.started", key="abc", data={"ok": False}) == 0  # another name
    assert client.send_event("ci.finished", key="abc", data={"ok": True}) == 1
    doc = run.status()
    assert doc["nodes"]["ci"]["status"] == "succeeded" and doc["nodes"]["ci"]["result"] == {"ok": True}
    assert doc["nodes"]["after"]["status"] == "queued"  # its successor went on at once


def test_an_event_sent_within_the_lookback_before_the_wait_began_resolves_it(app: CoditectApp) -> None:
    client = Client.of(app)
    client.send_event("deploy.done", key="v2", data={"at": "before"})
    dag = Dag("late")
    dag.wait("recent", "deploy.done", key="v2", lookback=10)
    dag.wait("strict", "deploy.done", key="v2")  # no lookback: only events from now on
    run = submit(dag, app)
    nodes = run.status()["nodes"]
    assert nodes["recent"]["status"] == "succeeded" and nodes["recent"]["result"] == {"at": "before"}
    assert nodes["strict"]["status"] == "waiting"
    run.cancel()
    assert run.status()["nodes"]["strict"]["status"] == "cancelled"
    assert client.send_event("deploy.done", key="v2", data=None) == 0  # a cancelled wait is gone


def test_a_wait_that_times_out_fails_its_run_at_its_deadline(app: CoditectApp) -> None:
    dag = Dag("timeout")
    dag.wait("ci", "ci.finished", timeout=1)
    run = submit(dag, app)
    took = _pace_until(app, lambda: run.state() != "running", 5)
    assert run.state() == "failed" and 0.9 <= took <= 2.0
    assert "timed out after 1 s waiting for event ci.finished|" in run.status()["nodes"]["ci"]["error"]


def test_a_wait_that_times_out_with_on_timeout_skip_is_skipped_and_its_successors_go_on(
    app: CoditectApp, registry: Registry
) -> None:
    dag = Dag("optional-review")
    dag.approval("review", timeout=1, on_timeout="skip")
    dag.node("after", "echo", after=["review"])
    run = submit(dag, app)
    _pace_until(app, lambda: run.status()["nodes"]["review"]["status"] != "waiting", 5)
    nodes = run.status()["nodes"]
    assert nodes["review"]["status"] == "skipped" and nodes["review"]["result"] is None
    assert nodes["review"]["error"] == "timed out after 1 s waiting for 1 approval(s)"
    assert nodes["after"]["status"] == "queued" and run.state() == "running"
    assert registry.client.llen(keys.agent_queue("echo")) == 1


def test_a_sleep_succeeds_at_its_deadline(app: CoditectApp, registry: Registry) -> None:
    dag = Dag("nap")
    dag.sleep("cooldown", seconds=1)
    run = submit(dag, app)
    assert registry.client.hget(keys.FRONTIER, "waiting|sleep") == "1"
    assert 0.9 <= _pace_until(app, lambda: run.state() == "succeeded", 5) <= 2.0
    assert registry.client.hget(keys.FRONTIER, "waiting|sleep") == "0"


def test_approvals_from_distinct_people_succeed_it_and_one_rejection_fails_it(app: CoditectApp) -> None:
    dag = Dag("ship")
    dag.approval("ship", approvers=2)
    run = submit(dag, app)
    assert run.approve("ship", by="ana", comment="looks good") == {"status": "waiting", "approvals": 1, "needed": 2}
    assert [d["by"] for d in run.status()["nodes"]["ship"]["approvals"]] == ["ana"]  # shown while it waits
    with pytest.raises(RunStateError, match="ana has approved node ship already"):
        run.approve("ship", by="ana")
    assert run.approve("ship", by="bo")["status"] == "succeeded"
    decisions = run.results()["ship"]["approved_by"]  # kept with the node once it has ended
    assert [(d["by"], d["decision"], d["comment"]) for d in decisions] == [
        ("ana", "approve", "looks good"),
        ("bo", "approve", ""),
    ]
    assert "approvals" not in run.status()["nodes"]["ship"]
    rejected = submit(dag, app)
    rejected.approve("ship", by="cy", reject=True, comment="not today")
    assert rejected.state() == "failed"
    assert rejected.status()["nodes"]["ship"]["error"] == "rejected by cy: not today"
    with pytest.raises(RunStateError, match="node ship is failed, not waiting"):
        rejected.approve("ship", by="dee")


def test_waiting_nodes_are_checked_when_the_dag_is(app: CoditectApp) -> None:
    with pytest.raises(MalformedDagError, match="'sleep' needs exactly one of 'seconds' and 'until'"):
        Dag.from_text("name: d\nnodes:\n  - {id: a, sleep: {}}\n")
    with pytest.raises(MalformedDagError, match="a waiting node calls no agent"):
        Dag.from_text("name: d\nnodes:\n  - {id: a, agent: echo, wait: {event: x}}\n")
    dag = Dag("bad")
    dag.wait("w", "ci.finished", key="{sha}")
    with pytest.raises(DagError, match=r"node 'w': 'wait.key' names params\['sha'\], which the node does not set"):
        submit(dag, app)
