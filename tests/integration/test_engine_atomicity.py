"""Redis does not roll back a Lua script that fails half-way: every engine script reads and checks
before its first write, and one run's broken state does not stop the reaper for the others.
Real Redis; the engine's scripts are called as a worker calls them."""

from __future__ import annotations

import pytest
import redis

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import CoditectApp
from coditect_tasks.dag.engine import engine_for
from coditect_tasks.dag.run import DagRun
from coditect_tasks.registry import Registry


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
    registry.client.delete(keys.run_prefix(run.id) + "tpl")  # b's message can no longer be built
    before = _snapshot(registry, run)
    with pytest.raises(redis.ResponseError, match="no message template"):
        engine.complete(run.id, "a", taken.token, '{"done": true}')
    assert _snapshot(registry, run) == before  # a still runs, b still pending, nothing recorded


def test_one_broken_run_does_not_stop_the_reaper_for_the_others(app: CoditectApp, registry: Registry) -> None:
    broken, healthy = _chain(app, "broken"), _chain(app, "healthy")
    engine = engine_for(app.settings.state_url)
    for run in (broken, healthy):
        assert engine.begin(run.id, "a", "gone-worker", f"{run.id}:a:1") is not None
    registry.client.delete(keys.run_prefix(broken.id) + "tpl")
    engine.reap()  # the first reap after a pause only extends leases (outage rule)
    registry.client.zadd(keys.LEASES, dict.fromkeys(registry.client.zrange(keys.LEASES, 0, -1), 0))
    out = engine.reap()
    assert out is not None
    assert f"{healthy.id}|a|1" in out  # the healthy run's lost attempt is queued again
    assert [m for m in out if m.startswith(f"error|{broken.id}|a|1|")]  # the broken one is reported
    assert healthy.status()["nodes"]["a"]["status"] == "queued"
    assert broken.status()["nodes"]["a"]["status"] == "running"  # untouched: nothing half-written
