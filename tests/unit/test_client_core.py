"""The client core with no I/O: its operations are driven here by sending replies, as a transport would."""

from __future__ import annotations

import fnmatch
import json
from types import SimpleNamespace
from typing import Any

import pytest

from coditect_tasks import keys
from coditect_tasks.client.core import RECHECK_SECONDS, Core
from coditect_tasks.errors import InvalidArgumentError
from coditect_tasks.history.queries import RunQuery
from coditect_tasks.settings import Settings
from coditect_tasks.steps import Ask, Block, Listen, Outlast, Pause


def core(revoked: list[list[str]] | None = None) -> Core:
    control = SimpleNamespace(revoke=lambda ids: (revoked if revoked is not None else []).append(ids))
    app = SimpleNamespace(settings=Settings(), agents={}, control=control)
    return Core(app, history=lambda: pytest.fail("the history is not read"), outage_seconds=1.0)


def finish(steps: Any, reply: Any) -> Any:
    with pytest.raises(StopIteration) as stop:
        steps.send(reply)
    return stop.value.value


def test_a_wait_listens_before_it_reads_and_pauses_until_the_run_is_over() -> None:
    steps = core().wait("r1", None)
    listen = next(steps)
    assert isinstance(listen, Listen) and listen.run_id == "r1"
    assert isinstance(steps.send("ticket"), Ask)  # the state, read once subscribed
    pause = steps.send("failing")  # a failing run still runs
    assert isinstance(pause, Pause) and pause.ticket == "ticket" and pause.seconds == RECHECK_SECONDS
    assert isinstance(steps.send(None), Ask)
    assert finish(steps, "succeeded") == "succeeded"


def test_a_wait_with_a_timeout_returns_the_state_it_has_when_time_is_up() -> None:
    steps = core().wait("r1", 0.0)
    next(steps)
    steps.send("ticket")
    assert finish(steps, "running") == "running"


def test_cancel_revokes_the_messages_still_queued_and_only_those() -> None:
    revoked: list[list[str]] = []
    steps = core(revoked).cancel("r1")
    assert isinstance(next(steps), Outlast)  # the script, repeated through an outage
    block = steps.send(json.dumps({"ok": 1, "queued": ["r1:a:1", "r1:b:2"]}))
    assert isinstance(block, Block)
    block.call()
    assert revoked == [["r1:a:1", "r1:b:2"]]
    assert finish(steps, None) is True


@pytest.mark.parametrize(
    ("reply", "took_effect"),
    [({"ok": 1, "queued": {}}, True), ({"ok": 0, "status": "succeeded"}, False)],  # cjson's empty list is {}
)
def test_cancel_with_nothing_queued_revokes_nothing(reply: dict[str, Any], took_effect: bool) -> None:
    steps = core().cancel("r1")
    next(steps)
    assert finish(steps, json.dumps(reply)) is took_effect


def test_a_listing_with_a_bad_filter_is_refused_before_any_read() -> None:
    with pytest.raises(InvalidArgumentError, match="not one of") as refused:
        RunQuery(status="done")
    assert isinstance(refused.value, ValueError)
    with pytest.raises(InvalidArgumentError, match="since 'tomorrow' is not an ISO-8601 time"):
        RunQuery(since="tomorrow")
    with pytest.raises(InvalidArgumentError, match="at least 1"):
        next(core().runs(limit=0))


def test_a_filter_passes_a_live_row_as_its_sql_passes_a_recorded_one() -> None:
    row = {
        "run_id": "ab12cd",
        "name": "Nightly-Review",
        "status": "failed",
        "submitted_at": "2026-12-06T10:00:00.000000+00:00",
    }
    assert RunQuery(status="failed", search="ab12").matches(row)
    assert RunQuery(search="review").matches(row)  # a part of the name, in any case
    assert not RunQuery(search="b12").matches(row)  # an id matches by its prefix only
    assert not RunQuery(name="Nightly").matches(row)  # a name matches whole
    assert RunQuery(since="2026-12-06T10:00:00Z", until="2026-12-06T11:00:00+01:00").matches(row) is False
    assert RunQuery(since="2026-12-06T10:00:00Z", until="2026-12-06T10:00:01Z").matches(row)
    assert RunQuery(since="2026-12-06T11:00:00+01:00").since == "2026-12-06T10:00:00.000000+00:00"


def test_the_run_of_an_end_channel_in_any_cell() -> None:
    for cell in (0, 1, 15):
        run_id = keys.new_run_id(cell)
        channel = keys.run_channel(run_id)
        assert keys.channel_run(channel) == run_id
        assert fnmatch.fnmatchcase(channel, keys.RUN_CHANNELS.replace("[", "[[]"))
