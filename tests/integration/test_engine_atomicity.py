"""Redis does not roll back a Lua script that fails half-way: every engine script reads and checks
before its first write, and one run's broken state does not stop the reaper for the others.
Real Redis; the engine's scripts are called as a worker calls them."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import CoditectApp
from coditect_tasks.bench import fanout
from coditect_tasks.client import Client, DagRun
from coditect_tasks.engine.transitions import Engine, engine_for
from coditect_tasks.registry import Registry

from ..support.marks import drop_templates, marks, to_previous_layout


def _chain(app: CoditectApp, name: str) -> DagRun:
    dag = Dag(name)
    a = dag.node("a", "echo")
    dag.node("b", "echo", after=[a])
    return submit(dag, app)


def _snapshot(registry: Registry, run: DagRun) -> tuple[dict[str, dict[str, str]], int, list[str]]:
    p = keys.run_prefix(run.id)
    hashes = {suffix: registry.client.hgetall(p + suffix) for suffix in keys.RUN_HASHES}
    return hashes, registry.client.xlen(keys.HISTORY), registry.client.lrange(keys.agent_queue("echo"), 0, -1)


def test_a_completion_that_cannot_queue_its_successor_writes_nothing(app: CoditectApp, registry: Registry) -> None:
    run = _chain(app, "atomic")
    engine = engine_for(app.settings.state_url)
    taken = engine.begin(run.id, "a", "w1", f"{run.id}:a:1")
    assert taken is not None
    drop_templates(registry.client, run.id)  # b's message can no longer be built
    before = _snapshot(registry, run)
    with pytest.raises(redis.ResponseError, match="no message template"):
        engine.complete(run.id, "a", taken.token, '{"done": true}')
    assert _snapshot(registry, run) == before  # a still runs, b still pending, nothing recorded


def test_one_broken_run_does_not_stop_the_reaper_for_the_others(app: CoditectApp, registry: Registry) -> None:
    broken, healthy = _chain(app, "broken"), _chain(app, "healthy")
    engine = engine_for(app.settings.state_url)
    for run in (broken, healthy):
        assert engine.begin(run.id, "a", "gone-worker", f"{run.id}:a:1") is not None
    drop_templates(registry.client, broken.id)
    engine.reap()  # the first reap after a pause only extends leases (outage rule)
    registry.client.zadd(keys.LEASES, dict.fromkeys(registry.client.zrange(keys.LEASES, 0, -1), 0))
    out = engine.reap()
    assert out is not None
    assert f"{healthy.id}|a|1" in out  # the healthy run's lost attempt is queued again
    assert [m for m in out if m.startswith(f"error|{broken.id}|a|1|")]  # the broken one is reported
    assert healthy.status()["nodes"]["a"]["status"] == "queued"
    assert broken.status()["nodes"]["a"]["status"] == "running"  # untouched: nothing half-written


def _submit_stopping_after_its_transaction(app: CoditectApp, n: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """Submit n roots from a process that stops right after its transaction, before the second
    slice; the run's id."""
    client = Client.of(app)

    def stop_before_the_second_slice(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setitem(client.scripts, "roots", stop_before_the_second_slice)
    with pytest.raises(KeyboardInterrupt):
        submit(fanout(n), app)
    monkeypatch.undo()
    (run_id,) = client.redis.zrange(keys.SUBMITTING, 0, -1)
    return str(run_id)


def _reap(engine: Engine) -> None:
    """One reap (the first after a quiet spell only renews leases: Redis looked unreachable)."""
    if engine.reap() is None:
        assert engine.reap() is not None


def _queued(registry: Registry) -> int:
    return int(registry.client.llen(keys.agent_queue("noop")))


def test_a_run_with_many_roots_is_queued_in_slices_and_the_reaper_finishes_a_stopped_one(
    app: CoditectApp, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 2 * keys.ROOT_SLICE + 500
    whole = submit(fanout(n), app)
    assert _queued(registry) == n and whole.status()["status"] == "running"
    assert registry.client.zcard(keys.SUBMITTING) == 0
    registry.client.delete(keys.agent_queue("noop"))

    engine = engine_for(app.settings.state_url)
    stopped = _submit_stopping_after_its_transaction(app, n, monkeypatch)
    assert _queued(registry) == keys.ROOT_SLICE
    registry.client.zadd(keys.SUBMITTING, {stopped: 0})  # its stall time is over
    _reap(engine)
    assert _queued(registry) == 2 * keys.ROOT_SLICE  # one slice a reap: no script holds Redis long
    _reap(engine)  # and the next on the next reap, with no stall to wait out
    assert _queued(registry) == n
    assert registry.client.zcard(keys.SUBMITTING) == 0
    assert not registry.client.exists(keys.run_prefix(stopped) + "unpushed")
    statuses = set(registry.client.hvals(keys.run_prefix(stopped) + "status"))
    assert statuses == {"queued"}


def test_cancelling_a_run_whose_roots_are_still_being_queued_drops_the_rest(
    app: CoditectApp, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for(app.settings.state_url)
    run_id = _submit_stopping_after_its_transaction(app, keys.ROOT_SLICE + 10, monkeypatch)
    run = DagRun(run_id, Client.of(app))
    assert run.cancel()
    assert run.status()["status"] == "cancelled"
    assert set(registry.client.hvals(keys.run_prefix(run_id) + "status")) == {"cancelled"}
    registry.client.zadd(keys.SUBMITTING, {run_id: 0})
    registry.client.delete(keys.agent_queue("noop"))
    _reap(engine)
    assert _queued(registry) == 0  # nothing of a cancelled run is queued later
    assert registry.client.zcard(keys.SUBMITTING) == 0


def _wide(app: CoditectApp, n: int) -> DagRun:
    dag = Dag("wide")
    dag.node("root", "echo")
    for i in range(n):
        dag.node(f"w{i}", "noop", after=["root"])
    return submit(dag, app)


def test_a_wide_fan_out_queues_its_first_successors_at_once_and_the_reaper_the_rest_of_a_stopped_one(
    app: CoditectApp, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 3 * keys.READY_SLICE + 5
    engine = engine_for(app.settings.state_url)
    whole = _wide(app, n)
    taken = engine.begin(whole.id, "root", "w1", f"{whole.id}:root:1")
    assert taken is not None and engine.complete(whole.id, "root", taken.token, "null")
    assert _queued(registry) == n  # the completing process queued the rest, a slice a call
    assert registry.client.zcard(keys.SUBMITTING) == 0
    registry.client.delete(keys.agent_queue("noop"))

    stopped = _wide(app, n)
    taken = engine.begin(stopped.id, "root", "w1", f"{stopped.id}:root:1")
    assert taken is not None
    monkeypatch.setattr(Engine, "_queue_left", lambda *args: None)  # it stops right after its script
    assert engine.complete(stopped.id, "root", taken.token, "null")
    monkeypatch.undo()
    assert _queued(registry) == keys.READY_SLICE  # its first successors are takeable at once
    nodes = stopped.status()["nodes"]
    assert sum(node["status"] == "pending" for node in nodes.values()) == n - keys.READY_SLICE
    registry.client.zadd(keys.SUBMITTING, {stopped.id: 0})  # its stall time is over
    _reap(engine)
    assert _queued(registry) == n
    assert {node["status"] for nid, node in stopped.status()["nodes"].items() if nid != "root"} == {"queued"}
    assert registry.client.zcard(keys.SUBMITTING) == 0


def test_a_wide_completion_counts_down_successors_that_wait_on_another_node_too(
    app: CoditectApp, registry: Registry
) -> None:
    """A completion with many successors counts them down a thousand a command: one that waits on
    another node as well stays pending until that one completes too."""
    n = keys.READY_SLICE + 5
    dag = Dag("shared")
    dag.node("root", "noop")
    dag.node("other", "noop")
    for i in range(n):
        dag.node(f"w{i}", "noop", after=["root", "other"] if i % 2 else ["root"])
    run = submit(dag, app)
    engine = engine_for(app.settings.state_url)
    for node in ("root", "other"):
        taken = engine.begin(run.id, node, "w1", f"{run.id}:{node}:1")
        assert taken is not None and engine.complete(run.id, node, taken.token, "null")
        statuses = {nid: node["status"] for nid, node in run.status()["nodes"].items() if nid.startswith("w")}
        waiting = {f"w{i}" for i in range(1, n, 2)} if node == "root" else set()
        assert {nid for nid, status in statuses.items() if status == "pending"} == waiting, node
    assert _queued(registry) == n + 2  # root and other, then every successor once


@pytest.mark.parametrize("whole_templates", [False, True], ids=["previous", "before-shared-templates"])
def test_a_run_written_by_an_earlier_release_still_runs_in_its_own_layout(
    app: CoditectApp, registry: Registry, whole_templates: bool
) -> None:
    """The previous release kept a node's marks in hashes of their own (``seq``, ``order``, ``phase``)
    and its template ids in ``tpls``; the one before kept whole templates per run (``tpl``). This one
    packs them in the ``node`` hash and still runs a run written either way, in that run's layout."""
    run = _chain(app, "previous")
    p, client = keys.run_prefix(run.id), registry.client
    assert marks(client, run.id)["a"][0] == "1" and not client.exists(p + "seq")
    to_previous_layout(client, run.id, whole_templates)
    client.delete(keys.agent_queue("echo"))
    client.zadd(keys.WATCHES, {f"{run.id}|a|q": 1e12})  # the previous release watched each message
    engine = engine_for(app.settings.state_url)
    taken = engine.begin(run.id, "a", "w1", f"{run.id}:a:1")
    assert client.zcard(keys.WATCHES) == 0  # taken: its watch goes, as the previous release's take did
    assert taken is not None and engine.complete(run.id, "a", taken.token, "null")
    (raw,) = client.lrange(keys.agent_queue("echo"), 0, -1)
    body = json.loads(json.loads(raw)["body"])
    assert body[1] == {"run_id": run.id, "node_id": "b"}
    assert client.hget(p + "seq", "b") == "1" and client.hget(p + "phase", "b") == "demand|echo"
    assert not marks(client, run.id)  # nothing of the new layout written into an old run
    taken = engine.begin(run.id, "b", "w1", json.loads(raw)["headers"]["id"])
    assert taken is not None and engine.complete(run.id, "b", taken.token, "null")
    assert run.wait(5) == "succeeded"
    assert engine.retire(run.id, 60) and not client.exists(p + "phase")
    assert not {field: n for field, n in client.hgetall(keys.FRONTIER).items() if int(n)}  # counted once, out again
