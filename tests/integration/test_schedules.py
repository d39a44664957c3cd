"""Schedules on real scheduler processes, workers and Redis: one run per fire time whatever the
number of schedulers and whichever of them die, catch-up after downtime, and overlap policies."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
import redis

from coditect_tasks import Client, Dag, keys
from coditect_tasks.errors import DagError, ScheduleError
from coditect_tasks.redis_server import stop_processes
from coditect_tasks.settings import Settings

from ..conftest import ROOT, SUPPORT_ENV, WorkerFactory, wait_for

Start = Callable[[], subprocess.Popen[bytes]]


@pytest.fixture
def start_scheduler(settings: Settings, tmp_path: Path) -> Iterator[Start]:
    """Start ``coditect-tasks scheduler`` processes; every one is stopped at teardown."""
    started: list[subprocess.Popen[bytes]] = []
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **settings.environment()}

    def start() -> subprocess.Popen[bytes]:
        with (tmp_path / f"scheduler-{len(started) + 1}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "coditect_tasks", "scheduler"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        started.append(proc)
        return proc

    yield start
    stop_processes(started, timeout=10)


@pytest.fixture
def client(settings: Settings) -> Iterator[Client]:
    with Client(settings) as made:
        yield made


def fires(client: Client, name: str) -> dict[str, list[str]]:
    """Fire time (ms) → the runs in Redis started for it, of schedule ``name``."""
    found: dict[str, list[str]] = {}
    for run_id in client.redis.zrange(keys.RUNS, 0, -1):
        schedule, fire_time = client.redis.hmget(keys.run_prefix(run_id) + "run", "schedule", "fire_time")
        if schedule == name:
            moment = round(datetime.fromisoformat(fire_time).timestamp() * 1000)
            found.setdefault(str(moment), []).append(str(run_id))
    return found


def gaps(times: list[int], step: int) -> list[int]:
    """The fire times missing between the first and the last of ``times``."""
    return [t for t in range(min(times), max(times), step) if t not in set(times)]


def echo_dag(name: str) -> Dag:
    dag = Dag(name)
    dag.node("say", "echo", params={"text": name})
    return dag


def test_three_schedulers_make_one_run_per_fire_time_and_two_killed_leave_no_gap(
    client: Client, worker_factory: WorkerFactory, start_scheduler: Start
) -> None:
    worker_factory(["echo"], concurrency=2)
    schedulers = [start_scheduler() for _ in range(3)]
    client.schedules.add("tick", echo_dag("tick"), every="1s", overlap="allow")
    wait_for(lambda: len(fires(client, "tick")) >= 5, 20, "five fire times")
    for proc in schedulers[:2]:
        proc.send_signal(signal.SIGKILL)
    killed_at = time.time() * 1000
    wait_for(lambda: sum(1 for t in fires(client, "tick") if int(t) > killed_at) >= 5, 20, "five fires after")
    client.schedules.pause("tick")
    runs = fires(client, "tick")
    times = sorted(int(t) for t in runs)
    print(f"{len(times)} fire times, {sum(len(r) for r in runs.values())} runs; two schedulers killed at {killed_at}")
    assert {t: ids for t, ids in runs.items() if len(ids) > 1} == {}, "a fire time made two runs"
    assert gaps(times, 1000) == [], "a fire time made no run"
    assert all(t % 1000 == 0 for t in times)
    for ids in runs.values():
        assert client.get(ids[0]).wait(timeout=20) == "succeeded"
    listed = client.schedules.get("tick")
    assert listed["paused"] and listed["next_fire"] is None
    assert listed["last_run"] in {ids[0] for ids in runs.values()}


def test_missed_fire_times_are_made_up_once_within_the_catchup_window_and_never_without(
    client: Client, worker_factory: WorkerFactory, start_scheduler: Start
) -> None:
    worker_factory(["echo"], concurrency=2)
    first = start_scheduler()
    client.schedules.add("made-up", echo_dag("made-up"), every="1s", overlap="allow", catchup=30)
    client.schedules.add("dropped", echo_dag("dropped"), every="1s", overlap="allow", catchup=0)
    wait_for(lambda: len(fires(client, "made-up")) >= 2 and len(fires(client, "dropped")) >= 2, 20, "fires")
    first.send_signal(signal.SIGTERM)
    first.wait(10)
    stopped = time.time() * 1000
    time.sleep(4)  # the downtime under test: no scheduler runs
    restarted = time.time() * 1000
    start_scheduler()
    for name in ("made-up", "dropped"):
        wait_for(lambda n=name: max(int(t) for t in fires(client, n)) > restarted + 1000, 20, f"{name} after")
    made_up, dropped = fires(client, "made-up"), fires(client, "dropped")
    assert gaps(sorted(int(t) for t in made_up), 1000) == [], "a missed fire time was not made up"
    assert all(len(ids) == 1 for ids in made_up.values())
    missing = gaps(sorted(int(t) for t in dropped), 1000)
    print(f"down {stopped:.0f}..{restarted:.0f}: catchup 0 dropped {len(missing)} fire time(s)")
    assert len(missing) >= 3 and all(stopped - 1000 < t < restarted + 2000 for t in missing)


def test_overlap_skip_and_buffer_one_never_run_two_at_once(
    client: Client, worker_factory: WorkerFactory, start_scheduler: Start
) -> None:
    worker_factory(["slowpoke"], concurrency=3, extra_env=SUPPORT_ENV)
    start_scheduler()
    slow = Dag("slow")
    slow.node("nap", "slowpoke", params={"seconds": 2.5})
    for policy in ("skip", "buffer-one"):
        client.schedules.add(policy, slow, every="1s", overlap=policy)
    wait_for(lambda: all(len(fires(client, p)) >= 3 for p in ("skip", "buffer-one")), 30, "three runs each")
    for policy in ("skip", "buffer-one"):
        client.schedules.pause(policy)
    for policy in ("skip", "buffer-one"):
        spans = []
        for ids in fires(client, policy).values():
            doc = client.get(ids[0])
            assert doc.wait(timeout=20) == "succeeded"
            status = doc.status()
            spans.append((_at(status["submitted_at"]), _at(status["finished_at"])))
        spans.sort()
        overlaps = [(a, b) for a, b in itertools.pairwise(spans) if b[0] < a[1]]
        assert overlaps == [], f"{policy}: two runs at once"
        idle = [round(b[0] - a[1], 2) for a, b in itertools.pairwise(spans)]
        print(f"{policy}: {len(spans)} runs, idle between them {idle} s")
        if policy == "buffer-one":  # the held fire starts as the previous run ends, not at a later fire
            assert max(idle) < 1.0


def test_cancel_other_cancels_the_running_run_and_starts_the_new_one(
    client: Client, worker_factory: WorkerFactory, start_scheduler: Start
) -> None:
    worker_factory(["slowpoke"], concurrency=3, extra_env=SUPPORT_ENV)
    start_scheduler()
    slow = Dag("slow")
    slow.node("nap", "slowpoke", params={"seconds": 30})
    client.schedules.add("latest", slow, every="1s", overlap="cancel-other")
    wait_for(lambda: len(fires(client, "latest")) >= 3, 20, "three fires")
    client.schedules.pause("latest")
    runs = sorted((int(t), ids[0]) for t, ids in fires(client, "latest").items())
    states = Counter(client.get(run_id).state() for _, run_id in runs[:-1])
    assert states == Counter({"cancelled": len(runs) - 1})
    assert client.get(runs[-1][1]).state() == "running"
    client.get(runs[-1][1]).cancel()


def _at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_trigger_and_backfill_start_runs_that_name_their_schedule(
    client: Client, worker_factory: WorkerFactory
) -> None:
    worker_factory(["echo"], concurrency=2)
    client.schedules.add("daily", echo_dag("daily"), cron="0 3 * * *", tz="Europe/Berlin")
    run = client.schedules.trigger("daily")
    assert run.wait(timeout=20) == "succeeded"
    assert run.status()["schedule"] == "daily"
    started = client.schedules.backfill("daily", "2026-03-27T00:00:00+01:00", "2026-03-31T00:00:00+02:00")
    assert [s["fire_time"] for s in started] == [
        "2026-03-27T02:00:00.000+00:00",
        "2026-03-28T02:00:00.000+00:00",
        "2026-03-29T01:00:00.000+00:00",  # 03:00 CEST, the day the clocks went forward
        "2026-03-30T01:00:00.000+00:00",
    ]
    again = client.schedules.backfill("daily", "2026-03-27T00:00:00+01:00", "2026-03-31T00:00:00+02:00")
    assert again == started  # a fire time that had a run keeps it
    for item in started:
        assert client.get(item["run_id"]).wait(timeout=20) == "succeeded"
        assert client.get(item["run_id"]).status()["fire_time"] == item["fire_time"]
    assert client.schedules.delete("daily") and client.schedules.all() == []
    nobody = Dag("nobody")
    nobody.node("a", "nobody-serves-this")
    with pytest.raises(DagError, match=r"unknown agent .nobody-serves-this."):  # refused at add, as by a submit
        client.schedules.add("lost", nobody, every="1h")
    with pytest.raises(ScheduleError, match="exceeds CODITECT_IDEMPOTENCY_RETENTION"):
        client.schedules.add("long", echo_dag("long"), every="1h", catchup=10**9)
    assert client.schedules.all() == []
    assert not redis.Redis.from_url(client.settings.state_url).exists(keys.schedule_state("daily"))
