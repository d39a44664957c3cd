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
