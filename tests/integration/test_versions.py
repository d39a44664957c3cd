"""Versioned agents on real workers: a ramp pins each new run to one version, every node of it runs
on a worker of that version (the history says so), and a rollback moves only new runs."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator

import pytest

from coditect_tasks import Client, Dag
from coditect_tasks.history.recorder import Recorder
from coditect_tasks.settings import Settings

from ..conftest import SUPPORT_ENV, SUPPORT_MODULES, WorkerFactory, wait_for

#: Runs the ramp test submits: at 10 %, 400 runs put 6–14 % on version 2 with 4 standard deviations
#: to spare (the issue's 1,000-run figure is in the closing note: 10.9 %).
RUNS = 400


@pytest.fixture
def client(settings: Settings) -> Iterator[Client]:
    with Client(dataclasses.replace(settings, agent_modules=tuple(SUPPORT_MODULES.split(",")))) as made:
        yield made


def one_node() -> Dag:
    dag = Dag("versioned")
    dag.node("work", "versioned")
    return dag


def test_a_ten_percent_ramp_pins_a_tenth_of_new_runs_and_each_node_runs_on_its_version(
    client: Client, worker_factory: WorkerFactory, recorder: Recorder
) -> None:
    v1 = worker_factory(["versioned"], concurrency=2, extra_env=SUPPORT_ENV)
    v2 = worker_factory(["versioned@2"], concurrency=2, extra_env=SUPPORT_ENV)
    assert client.ramp("versioned", to="2", percent=10) == {
        "agent": "versioned",
        "base": None,
        "to": "2",
        "percent": 10,
    }
    runs = [client.submit(one_node()) for _ in range(RUNS)]
    for run in runs:
        assert run.wait(timeout=60) == "succeeded"
    wait_for(lambda: recorder.drain() == 0, 30, "the recorder to catch up")
    pinned: Counter[str] = Counter()
    for run in runs:
        doc = client.history().run(run.id)
        assert doc is not None
        version = doc["versions"]["versioned"]
        pinned[version] += 1
        node = doc["nodes"]["work"]
        assert node["worker"] == (v2.hostname if version == "2" else v1.hostname), (run.id, version, node)
        assert node["result"] == {"version": version or "1"}
    share = pinned["2"] / RUNS
    print(f"{RUNS} runs at a 10 % ramp: {pinned['2']} on version 2 ({share:.1%})")
    assert 0.04 <= share <= 0.16


def test_a_rollback_moves_new_runs_while_pinned_runs_and_their_children_finish_on_their_version(
    client: Client, worker_factory: WorkerFactory
) -> None:
    v1 = worker_factory(["versioned", "planner"], concurrency=2, extra_env=SUPPORT_ENV)
    v2 = worker_factory(["versioned@2"], concurrency=2, extra_env=SUPPORT_ENV)
    client.ramp("versioned", to="2", percent=100)
    gated = Dag("gated")
    gated.approval("go")
    gated.node("work", "versioned", after=["go"])
    gated.node("plan", "planner", params={"children": 2, "leaf": "versioned"}, after=["go"])
    in_flight = [client.submit(gated) for _ in range(3)]
    for run in in_flight:
        wait_for(lambda r=run: r.status()["nodes"]["go"]["status"] == "waiting", 10, "the approval to wait")
    assert client.rollback("versioned") == {"agent": "versioned", "base": None, "to": None, "percent": 0}
    after = client.submit(one_node())
    assert after.result(timeout=30) == {"work": {"version": "1"}}
    assert after.status()["versions"] == {}  # no ramp any more: as before there was one
    for run in in_flight:
        run.approve("go", by="ana")
    for run in in_flight:
        assert run.wait(timeout=30) == "succeeded"
        doc = run.status()
        assert doc["versions"] == {"versioned": "2"}
        assert doc["nodes"]["work"]["result"] == {"version": "2"} and doc["nodes"]["work"]["worker"] == v2.hostname
        for child in doc["nodes"]["plan"]["children"]:
            child_doc = client.get(child).status()
            assert child_doc["versions"] == {"versioned": "2"}, "a spawned run keeps its parent's version"
            assert child_doc["nodes"]["leaf"]["worker"] == v2.hostname
    assert v1.hostname != v2.hostname


def test_a_run_pinned_to_a_version_no_worker_serves_says_so(client: Client, worker_factory: WorkerFactory) -> None:
    worker_factory(["versioned"], concurrency=1, extra_env=SUPPORT_ENV)
    client.ramp("versioned", to="3", percent=100)
    run = client.submit(one_node())
    wait_for(lambda: run.status()["warnings"], 10, "a warning")
    assert run.status()["warnings"] == [
        "node 'work' waits for agent 'versioned' at version 3, which has no live worker"
    ]
    listed = client.agents()["agents"]["versioned"]["ramp"]
    assert listed == {"agent": "versioned", "base": None, "to": "3", "percent": 100}
    run.cancel()
