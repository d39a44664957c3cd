"""The DAG → plain Celery canvas translation the load test's comparison user submits."""

from __future__ import annotations

import pytest
from celery import chord
from celery.canvas import _chain

from coditect_tasks.app import create_app
from coditect_tasks.dag.spec import Dag
from coditect_tasks.errors import ConfigError
from coditect_tasks.load.canvas import canvas, check
from coditect_tasks.load.scenario import default_dag
from coditect_tasks.settings import Settings

APP = create_app(Settings(broker_url="redis://127.0.0.1:1/0"))  # builds signatures; never connects


def test_the_diamond_is_a_chain_into_a_chord() -> None:
    shape = canvas(default_dag(), APP)
    assert isinstance(shape.signature, _chain)
    first, rest = shape.signature.tasks
    assert first.task == "agents.noop" and first.immutable
    assert isinstance(rest, chord)
    assert [t.task for t in rest.tasks] == ["agents.noop", "agents.noop"]
    assert rest.body.task == "agents.echo"
    assert shape.first == (first.id,)


def test_a_chain_stays_a_chain_and_a_literal_foreach_is_a_group() -> None:
    dag = Dag("shapes")
    dag.node("a", "echo", params={"x": 1})
    dag.node("fan", "echo", foreach=[1, 2, 3], after=["a"])
    dag.node("z", "noop", after=["fan"])
    shape = canvas(dag, APP)
    tasks = shape.signature.tasks
    assert tasks[0].kwargs == {"params": {"x": 1}}
    fan = tasks[1]
    assert isinstance(fan, chord) and fan.body.task == "agents.noop"  # the group and what follows it
    assert [t.kwargs["params"]["item"] for t in fan.tasks] == [1, 2, 3]
    assert len({t.id for t in fan.tasks}) == 3  # each call its own task id


def test_a_foreach_over_a_result_has_no_canvas_form() -> None:
    dag = Dag("late")
    dag.node("list", "emit", params={"value": [1, 2]})
    dag.node("each", "echo", foreach="list", after=["list"])
    with pytest.raises(ConfigError, match="node 'each': a foreach over another node's result"):
        check(dag)
