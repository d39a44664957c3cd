"""The event cursor's merge of the stream, the database and live messages (pure: no Redis)."""

from __future__ import annotations

import json

import pytest

from coditect_tasks.engine.events import Cursor, order


def entry(eid: str, node: str, status: str) -> tuple[str, dict[str, str]]:
    return eid, {"run": "r", "node": node, "status": status, "at": "2026-01-01T00:00:00+00:00", "attempt": "1"}


def message(eid: str, node: str, status: str, n: int) -> str:
    return f"{eid} " + json.dumps({"node": node, "status": status, "at": "2026-01-01T00:00:00+00:00", "n": n})


RECORDED = [{"id": "5-0", "run": "r", "node": "", "status": "running", "at": "t", "attempt": None}]
STREAM = [entry("10-0", "a", "queued"), entry("10-1", "a", "running")]


def test_ids_order_as_numbers_not_strings() -> None:
    assert order("9-0") < order("10-0") < order("10-2") < order("10-10")
    with pytest.raises(ValueError):
        order("soon")


def test_replay_merges_both_reads_in_order_and_counts_an_entry_in_both_once() -> None:
    cursor = Cursor()
    both = [*RECORDED, {"id": "10-0", "run": "r", "node": "a", "status": "queued", "at": "t", "attempt": None}]
    events = cursor.replay(STREAM, both)
    assert [(e.id, e.node, e.status) for e in events] == [
        ("5-0", None, "running"),
        ("10-0", "a", "queued"),
        ("10-1", "a", "running"),
    ]
    assert cursor.known == 3 and not cursor.done


def test_live_messages_follow_on_and_a_skipped_count_asks_for_a_replay() -> None:
    cursor = Cursor()
    cursor.replay(STREAM, RECORDED)
    assert cursor.live(message("10-1", "a", "running", 3)) == []  # seen in the replay
    assert [e.status for e in cursor.live(message("11-0", "a", "succeeded", 4)) or []] == ["succeeded"]
    assert cursor.live(message("13-0", "", "succeeded", 6)) is None  # number 5 never came
    assert cursor.missed == 6
    events = cursor.replay([*STREAM, entry("12-0", "b", "queued"), entry("13-0", "", "succeeded")], RECORDED, 6)
    assert [(e.node, e.status) for e in events] == [("b", "queued"), (None, "succeeded")]
    assert cursor.done


def test_a_reconnect_after_the_last_event_ends_at_once() -> None:
    cursor = Cursor(after="13-0")
    assert cursor.replay([*STREAM, entry("13-0", "", "succeeded")], RECORDED) == []
    assert cursor.done


def test_nothing_after_the_terminal_event_is_given_out() -> None:
    cursor = Cursor()
    events = cursor.replay([entry("1-0", "", "cancelled"), entry("2-0", "a", "succeeded")], [])
    assert [e.status for e in events] == ["cancelled"] and cursor.done
