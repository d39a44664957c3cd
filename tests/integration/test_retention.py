"""Finished runs leave Redis once their history is recorded, and read the same from the history.

Real redis-server, real worker processes, the real recorder (in this process, drained on demand).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import CoditectApp, create_app
from coditect_tasks.client import Client, DagRun
from coditect_tasks.history.recorder import Recorder
from coditect_tasks.history.store import HistoryStore
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

from ..conftest import WorkerFactory, wait_for

pytestmark = pytest.mark.integration
AGENTS = ["echo", "emit", "flaky", "noop"]


@pytest.fixture
def app0(settings: Settings) -> Iterator[CoditectApp]:
    """An app whose settings delete a run's live state as soon as it is recorded."""
    app = create_app(dataclasses.replace(settings, live_retention=0))
    yield app
    app.close()


def _varied_runs(app: CoditectApp) -> list[DagRun]:
    diamond = Dag("diamond")
    diamond.node("a", "emit", params={"value": ["x", "y"]})
    diamond.node("b", "echo", after=["a"])
    diamond.node("c", "echo", foreach="a", after=["a"])
    diamond.node("d", "echo", after=["b", "c"])
    failing = Dag("failing")
    failing.node("bad", "flaky", params={"fail_times": 99}, retries=1)
    failing.node("never", "echo", after=["bad"])
    big = Dag("big-result")  # longer than what the transition stream carries of one result
    big.node("blob", "emit", params={"value": "z" * (keys.HISTORY_CAP * 3)})
    return [submit(dag, app) for dag in (diamond, failing, big)]


def _live_keys(client: redis.Redis, run: DagRun) -> list[str]:
    return list(client.scan_iter(match=keys.run_prefix(run.id) + "*"))


def test_a_recorded_run_leaves_redis_and_reads_the_same_from_the_history(
    app0: CoditectApp, worker_factory: WorkerFactory, registry: Registry
) -> None:
    worker_factory(AGENTS, concurrency=2)
    runs = _varied_runs(app0)
    assert [run.wait(30) for run in runs] == ["succeeded", "failed", "succeeded"]
    live = {run.id: run.status() for run in runs}
    assert registry.client.zcard(keys.UNRECORDED) == 3  # finished, waiting for the recorder
    assert all(_live_keys(registry.client, run) for run in runs)

    recorder = Recorder(registry.client, HistoryStore.from_settings(app0.settings), retention=0)
    recorder.drain()
    for run in runs:
        assert _live_keys(registry.client, run) == []
        assert run.status() == live[run.id], run.id  # the same document, now from the history
        assert run.state() == live[run.id]["status"]
    assert registry.client.zcard(keys.UNRECORDED) == 0
    assert registry.client.zcard(keys.RUNS) == 0
    assert {r["run_id"] for r in Client.of(app0).runs(limit=10)} == {run.id for run in runs}
    assert runs[2].results()["blob"] == "z" * (keys.HISTORY_CAP * 3)


def test_live_state_outlasts_a_stopped_recorder_then_expires_after_the_retention(
    settings: Settings, worker_factory: WorkerFactory, registry: Registry
) -> None:
    app = create_app(dataclasses.replace(settings, live_retention=1))
    worker_factory(AGENTS, concurrency=2)
    runs = [submit(_one_node(f"r{i}"), app) for i in range(5)]
    assert all(run.wait(30) == "succeeded" for run in runs)
    assert registry.client.zcard(keys.UNRECORDED) == 5  # no recorder: every run stays, counted
    assert all(registry.client.ttl(keys.run_prefix(run.id) + "run") == -1 for run in runs)  # no expiry
    Recorder(registry.client, HistoryStore.from_settings(app.settings), retention=1).drain()
    assert registry.client.zcard(keys.UNRECORDED) == 0
    wait_for(lambda: not any(_live_keys(registry.client, run) for run in runs), 10, "the live state to expire")
    assert all(run.status()["status"] == "succeeded" for run in runs)
    app.close()


def test_a_retired_run_is_deleted_when_its_window_ends_even_if_redis_has_not_expired_it(
    settings: Settings, worker_factory: WorkerFactory, registry: Registry
) -> None:
    """Redis expires keys by sampling and may keep expired ones in memory for a while, then free
    them in a burst; the recorder's next retirement, or the recorder idling, deletes a run whose
    window is over instead."""
    app = create_app(dataclasses.replace(settings, live_retention=1))
    worker_factory(AGENTS, concurrency=2)
    recorder = Recorder(registry.client, HistoryStore.from_settings(app.settings), retention=1)
    first = submit(_one_node("first"), app)
    assert first.wait(30) == "succeeded"
    recorder.drain()
    retained = _live_keys(registry.client, first)
    assert retained
    for key in retained:  # as if Redis had not got round to expiring them yet
        registry.client.persist(key)
    wait_for(lambda: registry.client.zcount(keys.RETIRED, "-inf", registry.client.time()[0]) == 1, 10, "its window")
    second = submit(_one_node("second"), app)
    assert second.wait(30) == "succeeded"
    recorder.drain()
    assert _live_keys(registry.client, first) == []
    assert registry.client.zscore(keys.RUNS, first.id) is None
    assert registry.client.zrange(keys.RETIRED, 0, -1) == [second.id]
    assert first.status()["status"] == "succeeded"  # from the history
    # no run ends after the second: the idle recorder deletes it once its window is over
    for key in _live_keys(registry.client, second):
        registry.client.persist(key)
    wait_for(lambda: registry.client.zcount(keys.RETIRED, "-inf", registry.client.time()[0]) == 1, 10, "its window")
    assert recorder.drain() == 0
    assert _live_keys(registry.client, second) == []
    assert registry.client.zcard(keys.RETIRED) == 0
    app.close()


def test_a_burst_of_runs_leaves_redis_where_it_started(
    app0: CoditectApp, worker_factory: WorkerFactory, registry: Registry
) -> None:
    worker_factory(AGENTS, concurrency=2)
    recorder = Recorder(registry.client, HistoryStore.from_settings(app0.settings), retention=0)
    warm = [submit(_one_node("warm"), app0)]  # the first run creates the queues' and counters' keys
    assert warm[0].wait(30) == "succeeded"
    recorder.drain()
    keys_before, memory_before = registry.client.dbsize(), registry.client.info("memory")["used_memory"]
    runs = [submit(_diamond(f"burst{i}"), app0) for i in range(300)]
    assert all(run.wait(60) == "succeeded" for run in runs)
    keys_during, memory_during = registry.client.dbsize(), registry.client.info("memory")["used_memory"]
    recorder.drain()
    keys_after, memory_after = registry.client.dbsize(), registry.client.info("memory")["used_memory"]
    print(
        f"300 diamond runs: Redis keys {keys_before} before, {keys_during} finished and unrecorded, {keys_after} "
        f"after recording; memory {memory_before / 1e6:.1f} MB before, {memory_after / 1e6:.1f} MB after; "
        f"{(memory_during - memory_before) / 300:.0f} bytes per finished run kept"
    )
    assert keys_after - keys_before <= 36
    assert memory_after - memory_before < 4 * 1024 * 1024
    assert all(run.status()["nodes"]["d"]["status"] == "succeeded" for run in runs[:20])


def test_a_retired_run_keeps_only_what_its_document_is_read_from_until_it_expires(
    settings: Settings, worker_factory: WorkerFactory, registry: Registry
) -> None:
    app = create_app(dataclasses.replace(settings, live_retention=600))
    worker_factory(AGENTS, concurrency=2)
    runs = _varied_runs(app)
    assert [run.wait(30) for run in runs] == ["succeeded", "failed", "succeeded"]
    before = [run.status() for run in runs]
    dispatch = [run.dispatch_seconds() for run in runs]
    recorder = Recorder(registry.client, HistoryStore.from_settings(app.settings), retention=600)
    recorder.drain()
    kept = {str(k).rsplit(":", 1)[1] for run in runs for k in _live_keys(registry.client, run)}
    assert kept == {"run", "doc"}  # messages, params, counters are gone; the node hashes are one document
    assert not any(registry.client.hexists(keys.run_prefix(run.id) + "run", "dag") for run in runs)
    assert [run.status() for run in runs] == before  # still read from Redis, the same
    assert [run.dispatch_seconds() for run in runs] == dispatch
    for suffix in ("run", "doc"):
        assert all(registry.client.ttl(keys.run_prefix(run.id) + suffix) > 500 for run in runs)
    used = registry.client.info("memory")["used_memory"]
    diamonds = [submit(_diamond(f"kept{i}"), app) for i in range(100)]
    assert all(run.wait(30) == "succeeded" for run in diamonds)
    running = registry.client.info("memory")["used_memory"]
    recorder.drain()
    retained = registry.client.info("memory")["used_memory"]
    print(
        f"a finished 4-node diamond holds {(running - used) / 100:.0f} bytes of Redis until recorded "
        f"(its stream entries included), {(retained - used) / 100:.0f} bytes in its retention window"
    )
    app.close()


def _one_node(name: str) -> Dag:
    dag = Dag(name)
    dag.node("n", "noop")
    return dag


def _diamond(name: str) -> Dag:
    dag = Dag(name)
    dag.node("a", "noop")
    dag.node("b", "noop", after=["a"])
    dag.node("c", "noop", after=["a"])
    dag.node("d", "noop", after=["b", "c"])
    return dag


def test_history_prune_deletes_finished_runs_older_than_the_age(
    app0: CoditectApp, worker_factory: WorkerFactory, registry: Registry
) -> None:
    worker_factory(AGENTS, concurrency=2)
    done = [submit(_one_node(f"old{i}"), app0) for i in range(3)]
    assert all(run.wait(30) == "succeeded" for run in done)
    going = Dag("still-going")
    going.node("wait", "flaky", params={"fail_times": 99}, retries=50)  # keeps retrying: never finishes here
    running = submit(going, app0)
    Recorder(registry.client, HistoryStore.from_settings(app0.settings), retention=0).drain()
    command = str(Path(sys.executable).parent / "coditect-tasks")
    env = {"PATH": "/usr/bin:/bin", **app0.settings.environment()}
    kept = subprocess.run([command, "history", "prune", "--older-than", "1d", "--json"], env=env, capture_output=True)
    assert json.loads(kept.stdout)["deleted_runs"] == 0
    pruned = subprocess.run([command, "history", "prune", "--older-than", "0s", "--json"], env=env, capture_output=True)
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["deleted_runs"] == 3
    store = HistoryStore.from_settings(app0.settings)
    assert [row["run_id"] for row in store.runs(10)] == [running.id]  # the running one stays
    assert all(store.run(run.id) is None for run in done)
    store.close()
    running.cancel()
