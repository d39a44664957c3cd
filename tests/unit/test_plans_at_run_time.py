"""What an agent hands the engine to plan at run time (``Spawn``) and how a wait's timeout is
written: checked before anything reaches Redis."""

from __future__ import annotations

import pytest

from coditect_tasks import AgentCall, Dag, Spawn
from coditect_tasks.dag.spawn import requested
from coditect_tasks.errors import MalformedDagError


def _dag(name: str) -> Dag:
    dag = Dag(name)
    dag.node("a", "echo")
    return dag


def test_the_children_asked_for_are_the_spawn_returned_else_what_call_spawn_was_given() -> None:
    one, two = _dag("one"), _dag("two")
    returned = Spawn(one)
    assert requested(returned, [two]) is returned  # a returned Spawn wins over call.spawn
    assert requested({"plain": 1}, []) is None
    call = AgentCall({}, {})
    call.spawn(one)
    single = requested({"ignored": True}, call.spawned)
    assert single is not None and single.one and single.dags == (one,)
    call.spawn([two])
    both = requested(None, call.spawned)
    assert both is not None and not both.one and both.dags == (one, two)
    listed = Spawn([one, two])
    assert not listed.one and listed.dags == (one, two)


def test_spawn_refuses_what_is_not_a_dag() -> None:
    with pytest.raises(TypeError, match="Spawn takes a Dag or a list of them, not dict"):
        Spawn([{"name": "x"}])  # type: ignore[list-item]


def test_on_timeout_skip_round_trips_and_needs_a_timeout() -> None:
    dag = Dag("d")
    dag.approval("review", timeout=60, on_timeout="skip")
    dag.wait("ci", "ci.finished", timeout=30)
    again = Dag.from_json(dag.to_json())
    assert again.nodes["review"].wait is not None and again.nodes["review"].wait.on_timeout == "skip"
    assert again.nodes["review"].wait.engine()["o"] == 1
    assert again.nodes["ci"].wait is not None and "o" not in again.nodes["ci"].wait.engine()
    with pytest.raises(MalformedDagError, match=r"'approval\.on_timeout' needs a 'timeout'"):
        Dag.from_text("name: d\nnodes:\n  - {id: a, approval: {on_timeout: skip}}\n")
    with pytest.raises(MalformedDagError, match=r"'wait\.on_timeout' must be one of fail, skip, got 'retry'"):
        Dag.from_text("name: d\nnodes:\n  - {id: a, wait: {event: x, timeout: 5, on_timeout: retry}}\n")
