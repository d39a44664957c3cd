"""The recorder is never stuck: an entry it cannot write goes to the dead-letter stream, the rest flow on."""

from __future__ import annotations

import pytest

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import create_app
from coditect_tasks.history.recorder import MAX_ATTEMPTS, Recorder
from coditect_tasks.history.store import HistoryStore
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

pytestmark = pytest.mark.integration


def dead_letters_keep_the_history_flowing(settings: Settings, registry: Registry, bad: dict[str, str]) -> None:
    """Submit two runs around one ``bad`` stream entry; every good transition is recorded."""
    app = create_app(settings)
    client = registry.client
    first, second = Dag("before-the-bad-entry"), Dag("after-the-bad-entry")
    first.node("a", "noop")
    second.node("b", "noop")
    before = submit(first, app)
    bad_id = client.xadd(keys.HISTORY, bad)
    after = submit(second, app)
    recorder = Recorder(client, HistoryStore.from_settings(settings))
    recorded = [recorder.drain() for _ in range(MAX_ATTEMPTS)]
    assert recorded == [4, 0, 1], recorded  # 2 runs × (run running, root queued); the bad one, dead-lettered
    dead = client.xrange(keys.HISTORY_DEAD)
    assert len(dead) == 1, dead
    fields = dead[0][1]
    assert fields["entry"] == bad_id and fields["attempts"] == str(MAX_ATTEMPTS) and fields["refused"], fields
    assert client.xlen(keys.HISTORY) == 0
    assert client.hget(keys.METRICS, "recorder_dead") == "1"
    store = HistoryStore.from_settings(settings)
    stored = {row["run_id"] for row in store.runs(10)}
    store.close()
    assert {before.id, after.id} <= stored
    app.close()


def test_an_entry_the_database_cannot_take_is_dead_lettered_on_sqlite(settings: Settings, registry: Registry) -> None:
    dead_letters_keep_the_history_flowing(settings, registry, {"run": "broken", "node": "x"})  # no status, no time


def test_entries_another_recorder_holds_stay_until_it_records_them(settings: Settings, registry: Registry) -> None:
    """A recorder drops what is recorded by trimming the stream below its oldest pending entry: a
    batch another recorder read and has not acknowledged (it died mid-batch) stays for it to read
    again (with what was recorded after it), and the stream empties once it has."""
    app = create_app(settings)
    client = registry.client
    runs = []
    for k in range(3):
        dag = Dag(f"held-{k}")
        dag.node("a", "noop")
        runs.append(submit(dag, app))
    store = HistoryStore.from_settings(settings)
    first = Recorder(client, store, consumer="recorder-a")
    second = Recorder(client, store, consumer="recorder-b")
    held = client.xreadgroup(keys.HISTORY_GROUP, "recorder-b", {keys.HISTORY: ">"}, count=2)[0][1]
    assert first.drain() == 4  # the other 4 of 3 runs × (run running, root queued)
    assert {entry_id for entry_id, _ in held} <= {entry_id for entry_id, _ in client.xrange(keys.HISTORY)}
    assert second.drain() == 2  # its own unacknowledged entries first
    assert client.xlen(keys.HISTORY) == 0
    assert {run.id for run in runs} <= {row["run_id"] for row in store.runs(10)}
    store.close()
    app.close()
