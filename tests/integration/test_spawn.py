"""Child runs spawned by a node, on real workers and a real Redis: the spawning node holds no worker
slot while its children run, exactly one set of children survives a SIGKILL, a cancel reaches
every descendant, and the depth and tree-size limits fail the node that would pass them."""

from __future__ import annotations

import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from coditect_tasks import Client, Dag, DagRun, keys, submit
from coditect_tasks.app import CoditectApp
from coditect_tasks.history.models import RunRecord
from coditect_tasks.history.recorder import Recorder
from coditect_tasks.registry import Registry

from ..conftest import SUPPORT_ENV, WorkerFactory, wait_for


def _planner(params: dict[str, Any], retries: int | None = None) -> Dag:
    dag = Dag("plan")
    dag.node("plan", "planner", params=params, retries=retries)
    dag.node("after", "echo", after=["plan"])
    return dag


def _children(run: DagRun, node: str = "plan") -> list[str]:
    return list(run.status()["nodes"][node].get("children") or [])


def _none_waiting(registry: Registry) -> bool:
    """No spawning node waits any more: the frontier's count of them is back to zero."""
    return registry.client.hget(keys.FRONTIER, "waiting|spawn") in (None, "0")


def _descendants(client: Client, run_id: str) -> list[str]:
    """Every run below ``run_id``, level by level."""
    found, level = [], [run_id]
    while level:
        below = [c for r in level for n in client.get(r).status()["nodes"].values() for c in n.get("children") or []]
        found += below
        level = below
    return found


def test_a_planner_on_a_one_process_pool_spawns_twenty_runs_and_waits_for_them_holding_no_slot(
    test_app: CoditectApp, worker_factory: WorkerFactory, registry: Registry
) -> None:
    worker_factory(["planner", "echo"], concurrency=1, extra_env=SUPPORT_ENV)  # one slot for the planner and all
    run = submit(_planner({"children": 20}), test_app)
    assert run.wait(timeout=60) == "succeeded", run.status()["error"]
    doc = run.status()
    children = doc["nodes"]["plan"]["children"]
    assert len(children) == 20 and len(set(children)) == 20
    # the node's result is every child's results, in the order it spawned them
    assert [r["leaf"]["params"]["i"] for r in doc["nodes"]["plan"]["result"]] == list(range(20))
    assert doc["nodes"]["after"]["result"]["upstream"]["plan"] == doc["nodes"]["plan"]["result"]
    assert _none_waiting(registry) and not registry.client.hgetall(keys.run_prefix(run.id) + "spawns")
    latencies = []
    client = Client.of(test_app)
    for child in children:
        child_doc = client.get(child).status()
        assert (child_doc["parent_run_id"], child_doc["parent_node"], child_doc["status"]) == (
            run.id,
            "plan",
            "succeeded",
        )
        began = datetime.fromisoformat(child_doc["nodes"]["leaf"]["started_at"])
        latencies.append((began - datetime.fromisoformat(child_doc["submitted_at"])).total_seconds())
    print(
        f"spawn to child running: p50 {statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )


def test_a_failed_child_fails_its_node_by_name_and_the_node_retry_policy_spawns_anew(
    test_app: CoditectApp, worker_factory: WorkerFactory
) -> None:
    worker_factory(["planner", "poison"], concurrency=2, extra_env=SUPPORT_ENV)
    run = submit(_planner({"children": 1, "leaf": "poison", "leaf_params": {"kind": "raise"}}, retries=1), test_app)
    assert run.wait(timeout=60) == "failed"
    node = run.status()["nodes"]["plan"]
    assert node["attempts"] == 2  # the retry spawned a second set, which failed too
    (child,) = node["children"]  # the second attempt's set
    assert node["error"] == f"child run {child} failed: node leaf failed: ValueError: poison raises on every attempt"
    assert run.status()["nodes"]["after"]["status"] == "skipped"


def test_cancelled_children_fail_their_node_by_name_once_every_child_has_ended(
    test_app: CoditectApp, worker_factory: WorkerFactory
) -> None:
    worker_factory(["planner"], concurrency=1, extra_env=SUPPORT_ENV)
    run = submit(_planner({"children": 2, "leaf": "sleep", "seconds": 600}), test_app)
    wait_for(lambda: len(_children(run)) == 2, 30, "the children")
    first, second = _children(run)
    client = Client.of(test_app)
    assert client.get(first).cancel()
    assert run.status()["nodes"]["plan"]["status"] == "waiting"  # for the other child
    assert client.get(second).cancel()
    assert run.wait(timeout=10) == "failed"
    error = run.status()["nodes"]["plan"]["error"]
    assert error == f"child run {first} was cancelled; child run {second} was cancelled"


def test_cancel_reaches_every_descendant_three_levels_down_within_three_seconds(
    test_app: CoditectApp, worker_factory: WorkerFactory, registry: Registry
) -> None:
    worker_factory(["planner"], concurrency=2, extra_env=SUPPORT_ENV)
    run = submit(_planner({"children": 2, "levels": 3, "leaf": "sleep", "seconds": 600}), test_app)
    client = Client.of(test_app)
    wait_for(lambda: len(_descendants(client, run.id)) == 2 + 4 + 8, 60, "three levels of descendants")
    descendants = _descendants(client, run.id)
    assert {client.get(d).state() for d in descendants} == {"running"}
    started = time.monotonic()
    assert run.cancel()
    wait_for(lambda: {client.get(d).state() for d in descendants} == {"cancelled"}, 3, "every descendant cancelled")
    print(f"cancel reached {len(descendants)} descendants in {(time.monotonic() - started) * 1000:.0f} ms")
    assert _none_waiting(registry)


def test_a_planner_that_returns_after_its_run_was_cancelled_starts_nothing(
    test_app: CoditectApp, worker_factory: WorkerFactory, registry: Registry, tmp_path: Path
) -> None:
    worker_factory(["planner"], concurrency=1, extra_env=SUPPORT_ENV)
    gate = tmp_path / "gate"
    run = submit(_planner({"children": 2, "leaf": "sleep", "seconds": 600, "gate": str(gate)}), test_app)
    wait_for(lambda: run.status()["nodes"]["plan"]["status"] == "running", 30, "the planner to run")
    assert run.cancel()  # a running node finishes; what it then asks for must not start
    gate.touch()
    wait_for(lambda: run.status()["nodes"]["plan"]["status"] != "running", 30, "the planner to return")
    node = run.status()["nodes"]["plan"]
    assert node["status"] == "skipped" and "children" not in node
    assert _none_waiting(registry)


def test_a_run_that_fails_cancels_the_children_of_its_waiting_node(
    test_app: CoditectApp, worker_factory: WorkerFactory, registry: Registry, tmp_path: Path
) -> None:
    worker_factory(["planner", "gated"], concurrency=2, extra_env=SUPPORT_ENV)
    dag = _planner({"children": 2, "leaf": "sleep", "seconds": 600})
    dag.wait("go", "test.go", key="spawn")
    dag.node("boom", "gated", params={"gate": str(tmp_path / "closed"), "log": str(tmp_path / "log")}, after=["go"])
    run = submit(dag, test_app)
    wait_for(lambda: len(_children(run)) == 2, 30, "the children")
    Client.of(test_app).send_event("test.go", key="spawn")  # boom runs now, and fails the run
    assert run.wait(timeout=30) == "failed"
    assert run.status()["nodes"]["plan"]["status"] == "skipped"
    assert [Client.of(test_app).get(child).state() for child in _children(run)] == ["cancelled", "cancelled"]
    assert _none_waiting(registry)


def test_the_depth_and_tree_size_limits_and_a_bad_spawn_fail_the_node_by_name(
    test_app: CoditectApp, worker_factory: WorkerFactory
) -> None:
    limits = {"CODITECT_SPAWN_MAX_DEPTH": "2", "CODITECT_SPAWN_MAX_NODES": "5"}
    worker_factory(["planner", "echo"], concurrency=2, extra_env={**SUPPORT_ENV, **limits})
    deep = submit(_planner({"children": 1, "levels": 3}), test_app)
    wide = submit(_planner({"children": 10}), test_app)
    bad = submit(_planner({"bad_spawn": True}), test_app)
    assert bad.wait(timeout=60) == "failed"
    assert bad.status()["nodes"]["plan"]["error"] == "spawn: Spawn takes a Dag or a list of them, not str"
    assert deep.wait(timeout=60) == "failed"
    assert wide.wait(timeout=60) == "failed"
    assert "over the limit of 2 (CODITECT_SPAWN_MAX_DEPTH)" in deep.status()["nodes"]["plan"]["error"]
    assert wide.status()["nodes"]["plan"]["error"] == (
        f"spawn of 10 node(s) would make 12 in the tree of run {wide.id}, over the limit of 5 (CODITECT_SPAWN_MAX_NODES)"
    )
    assert "children" not in wide.status()["nodes"]["plan"]  # nothing was started


def test_a_sigkill_around_the_spawn_leaves_exactly_one_set_of_children(
    test_app: CoditectApp, worker_factory: WorkerFactory, recorder: Recorder, tmp_path: Path
) -> None:
    first = worker_factory(["planner", "echo"], concurrency=1, extra_env=SUPPORT_ENV)
    # the first attempt dies just before it returns Spawn; the next spawns, and its worker is then killed
    params = {"children": 3, "leaf": "sleep", "seconds": 3, "die_once": str(tmp_path / "died")}
    run = submit(_planner(params), test_app)
    wait_for(lambda: run.status()["nodes"]["plan"]["status"] == "waiting", 30, "the retried planner to spawn")
    first.kill(group=True)
    worker_factory(["planner", "echo"], concurrency=1, extra_env=SUPPORT_ENV)
    assert run.wait(timeout=60) == "succeeded", run.status()["error"]
    assert run.status()["nodes"]["plan"]["attempts"] == 2
    wait_for(lambda: recorder.drain() == 0 and recorder.store.run(run.id)["status"] == "succeeded", 10, "the history")
    with Session(recorder.store.db) as session:
        spawned = session.scalar(select(func.count()).where(RunRecord.parent_run_id == run.id))
    assert spawned == 3
