"""Schedule arithmetic, with no waiting: fire times of intervals and of crons in a time zone across
its daylight-saving changes, catch-up spans, jitter, and the errors of schedules that cannot fire."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from coditect_tasks.errors import ScheduleError
from coditect_tasks.schedules.spec import MAX_BACKFILL, Schedule, iso, parse_duration, parse_time

DAG: dict[str, Any] = {"name": "nightly", "nodes": [{"id": "a", "agent": "echo", "params": {"x": 1, "y": 2}}]}
BERLIN = ZoneInfo("Europe/Berlin")


def ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def berlin(ms_value: int) -> str:
    return datetime.fromtimestamp(ms_value / 1000, BERLIN).isoformat()


def test_durations_take_a_unit_and_sub_minute_intervals() -> None:
    assert [parse_duration(t) for t in ("2s", "5m", "1h", "1d", "500ms", "1.5s")] == [2, 300, 3600, 86400, 0.5, 1.5]
    for bad in ("2", "two seconds", "5 min", "-1s", ""):
        with pytest.raises(ScheduleError, match="write a number and a unit"):
            parse_duration(bad)


def test_an_interval_fires_on_its_multiples_since_the_epoch_so_every_scheduler_agrees() -> None:
    every = Schedule("tick", DAG, every=2.0)
    assert every.next_after(1_000_000) == 1_002_000
    assert every.next_after(1_001_999) == 1_002_000
    assert every.next_after(1_002_000) == 1_004_000  # strictly after
    assert every.fires(1_000_000, 1_010_000) == [1_000_000, 1_002_000, 1_004_000, 1_006_000, 1_008_000]


def test_a_daily_cron_in_berlin_follows_both_daylight_saving_changes() -> None:
    daily = Schedule("nightly", DAG, cron="30 2 * * *", tz="Europe/Berlin")
    # spring: 02:30 does not exist on 29 March 2026 (02:00 CET → 03:00 CEST); it fires once, at 03:00
    start = ms(datetime(2026, 3, 27, 12, tzinfo=BERLIN))
    spring = daily.fires(start, start + 4 * 86_400_000)
    assert [berlin(f) for f in spring] == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    assert spring[1] - spring[0] == 23.5 * 3_600_000  # the day was an hour short
    # autumn: 02:30 happens twice on 25 October 2026; it fires once, at the first
    start = ms(datetime(2026, 10, 24, 12, tzinfo=BERLIN))
    autumn = daily.fires(start, start + 3 * 86_400_000)
    assert [berlin(f) for f in autumn] == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_an_hourly_cron_in_berlin_keeps_real_hours_across_the_changes() -> None:
    hourly = Schedule("hourly", DAG, cron="0 * * * *", tz="Europe/Berlin")
    start = ms(datetime(2026, 3, 29, 0, 30, tzinfo=BERLIN))
    fires = hourly.fires(start, start + 4 * 3_600_000)
    assert [berlin(f) for f in fires] == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:00 never happened: one real hour after 01:00
        "2026-03-29T04:00:00+02:00",
        "2026-03-29T05:00:00+02:00",
    ]
    assert {b - a for a, b in itertools.pairwise(fires)} == {3_600_000}


def test_next_after_is_strictly_after_inside_the_hour_the_autumn_change_repeats() -> None:
    daily = Schedule("nightly", DAG, cron="30 2 * * *", tz="Europe/Berlin")
    inside = ms(datetime(2026, 10, 25, 1, 10, tzinfo=UTC))  # 02:10 CET, after the first 02:30 (00:30Z)
    after = daily.next_after(inside)
    assert after > inside and berlin(after) == "2026-10-26T02:30:00+01:00"


def test_a_stored_schedule_with_a_field_from_a_later_release_still_loads() -> None:
    stored = {**Schedule("s", DAG, every=5.0).to_json(), "added_later": 1}
    assert Schedule.from_json(stored) == Schedule("s", DAG, every=5.0)


def test_the_same_cron_in_utc_and_in_berlin_fires_at_different_instants() -> None:
    utc = Schedule("u", DAG, cron="0 9 * * *")
    local = Schedule("b", DAG, cron="0 9 * * *", tz="Europe/Berlin")
    at = ms(datetime(2026, 7, 1, tzinfo=UTC))
    assert iso(utc.next_after(at)) == "2026-07-01T09:00:00.000+00:00"
    assert iso(local.next_after(at)) == "2026-07-01T07:00:00.000+00:00"  # CEST is UTC+2


def test_jitter_is_the_same_for_every_scheduler_and_within_its_bound() -> None:
    jittered = Schedule("j", DAG, every=60.0, jitter=5.0)
    delays = [jittered.delay(fire) for fire in jittered.fires(0, 100 * 60_000)]
    assert delays == [Schedule("j", DAG, every=60.0, jitter=5.0).delay(f) for f in jittered.fires(0, 100 * 60_000)]
    assert all(0 <= d < 5000 for d in delays) and len(set(delays)) > 50  # spread, not one value
    assert Schedule("k", DAG, every=60.0).delay(60_000) == 0


def test_each_fire_has_its_own_idempotency_key_and_a_re_added_schedule_new_ones() -> None:
    first = Schedule("n", DAG, every=2.0, created=1)
    assert first.idempotency_key(2000) != first.idempotency_key(4000)
    assert first.idempotency_key(2000) != Schedule("n", DAG, every=2.0, created=2).idempotency_key(2000)


def test_params_go_over_every_agent_nodes_own() -> None:
    dag = {
        "name": "p",
        "nodes": [
            {"id": "a", "agent": "echo", "params": {"x": 1, "y": 2}},
            {"id": "ok", "approval": {"approvers": 1}, "after": ["a"]},
        ],
    }
    run = Schedule("p", dag, every=5.0, params={"y": 3, "z": 4}).run_dag()
    assert run.nodes["a"].params == {"x": 1, "y": 3, "z": 4}
    assert run.nodes["ok"].params == {}


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"cron": "*/5 * * * *", "every": 5.0}, "either a cron expression or an interval"),
        ({}, "either a cron expression or an interval"),
        ({"cron": "61 * * * *"}, "cron '61 \\* \\* \\* \\*'"),
        ({"cron": "* * *"}, "cron"),
        ({"every": 0.5}, "at least 1 s"),
        ({"every": 5.0, "tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"every": 5.0, "overlap": "queue"}, "overlap 'queue' is not one of skip, buffer-one, allow, cancel-other"),
        ({"every": 5.0, "catchup": -1.0}, "must not be negative"),
        ({"every": 5.0, "jitter": 5.0}, "jitter must be shorter than the time between fires"),
        ({"cron": "*/5 * * * *", "jitter": 300.0}, "jitter must be shorter than the time between fires"),
        ({"cron": "0 0 * * * *"}, "five fields: minute hour day month weekday|five fields"),
        ({"every": 5.0, "jitter": float("inf")}, "must be finite numbers"),
        ({"every": 5.0, "name": "no spaces"}, "must match"),
    ],
)
def test_a_schedule_that_cannot_fire_is_refused_with_what_is_wrong(fields: dict[str, Any], problem: str) -> None:
    given = {"name": "s", "dag": DAG, **fields}
    with pytest.raises(ScheduleError, match=problem):
        Schedule(**given)


def test_a_schedule_of_a_dag_that_cannot_run_is_refused() -> None:
    with pytest.raises(ScheduleError, match=r"schedule .s.*duplicate node id"):
        Schedule("s", {"name": "d", "nodes": [{"id": "a", "agent": "echo"}, {"id": "a", "agent": "echo"}]}, every=5.0)


def test_a_backfill_span_is_bounded() -> None:
    every = Schedule("b", DAG, every=1.0)
    assert len(every.fires(0, MAX_BACKFILL * 1000)) == MAX_BACKFILL
    with pytest.raises(ScheduleError, match=f"over {MAX_BACKFILL} fire times"):
        every.fires(0, (MAX_BACKFILL + 1) * 1000)


def test_times_are_iso_8601_and_utc_unless_they_say_otherwise() -> None:
    assert parse_time("2026-03-29T02:00:00+01:00", "--from") == ms(datetime(2026, 3, 29, 1, tzinfo=UTC))
    assert parse_time("2026-03-29T01:00:00", "--from") == ms(datetime(2026, 3, 29, 1, tzinfo=UTC))
    with pytest.raises(ScheduleError, match="--to 'tomorrow' is not an ISO-8601 time"):
        parse_time("tomorrow", "--to")
