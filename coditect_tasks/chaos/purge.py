"""Removing ``coditect-tasks chaos``'s runs afterwards, from Redis and from the history.

The recorder is given time to write each run's history first, so that it writes nothing of theirs
after the purge; entries it never took are dropped from the history stream. The engine's counters
(``coditect_runs_submitted_total`` and the like) keep having counted the probe runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .. import keys
from ..client import Client, DagRun
from ..history.store import HistoryStore
from .probes import executions

#: Seconds the purge waits for the recorder to have written the runs' history.
RECORD_WAIT_SECONDS = 30.0
#: History stream entries looked at, at most, for those of a run the recorder never took.
STREAM_LOOK = 10_000


def purge(client: Client, run_ids: Sequence[str]) -> int:
    """Delete every trace of ``run_ids`` in Redis and the history, cancelling first any still
    running (so no lease, queued message or frontier count of theirs stays behind); how many of
    them the recorder had not written within ``RECORD_WAIT_SECONDS`` (their stream entries dropped)."""
    redis = client.redis
    for run_id in run_ids:
        run = DagRun(run_id, client)
        if run.cancel():  # (False: it had ended)
            run.wait(timeout=RECORD_WAIT_SECONDS)
    deadline = time.monotonic() + RECORD_WAIT_SECONDS
    unrecorded = list(run_ids)
    while unrecorded and time.monotonic() < deadline:
        unrecorded = [r for r in unrecorded if redis.zscore(_unrecorded(r), r) is not None]
        if unrecorded:
            time.sleep(0.2)
    for run_id in unrecorded:
        _drop_entries(client, run_id)
    for run_id in run_ids:
        cell = keys.cell_of(run_id)
        p = keys.run_prefix(run_id)
        redis.delete(*(p + suffix for suffix in keys.RUN_HASHES), executions(run_id))
        for index in (keys.RUNS, keys.UNRECORDED, keys.RETIRED, keys.SUBMITTING):
            redis.zrem(keys.in_cell(index, cell), run_id)
    HistoryStore.from_settings(client.settings).delete_runs(list(run_ids))
    return len(unrecorded)


def _unrecorded(run_id: str) -> str:
    return keys.in_cell(keys.UNRECORDED, keys.cell_of(run_id))


def _drop_entries(client: Client, run_id: str) -> None:
    """Delete the run's entries from its cell's history stream, from its first on."""
    redis = client.redis
    stream = keys.in_cell(keys.HISTORY, keys.cell_of(run_id))
    start = str(redis.hget(keys.run_prefix(run_id) + "run", "first_event") or "-")
    seen = 0
    while seen < STREAM_LOOK:
        page: list[tuple[str, dict[str, str]]] = list(redis.xrange(stream, start, "+", count=500))  # type: ignore[arg-type]
        if not page:
            return
        ours = [entry for entry, fields in page if fields and fields.get("run") == run_id]
        if ours:
            redis.xdel(stream, *ours)
        seen += len(page)
        start = "(" + str(page[-1][0])
