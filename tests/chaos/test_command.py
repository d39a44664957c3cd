"""``coditect-tasks chaos`` as an operator runs it: against a fresh embedded stack every fault
passes its default objectives; against a deployment (a Redis and a recorder of the test's own,
acted on through the Redis's process id) a tightened objective fails with its fault named, and the
command leaves no run of its own in Redis or the history, and no process."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from coditect_tasks import keys
from coditect_tasks.embedded import LocalStack
from coditect_tasks.history.store import HistoryStore
from coditect_tasks.redis_server import RedisServer
from coditect_tasks.settings import Settings

from ..conftest import run_cli

pytestmark = [pytest.mark.chaos, pytest.mark.xdist_group("chaos-command")]


def probes_running() -> list[str]:
    found = subprocess.run(["pgrep", "-af", "chaos-probe"], capture_output=True, text=True, check=False)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


def test_every_fault_passes_on_the_embedded_stack(tmp_path: Path) -> None:
    report = tmp_path / "chaos.html"
    done = run_cli(["chaos", "--json", "--report", str(report)], {"CODITECT_HOME": str(tmp_path / "home")}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    faults = {f["fault"]: f for f in json.loads(done.stdout)["faults"]}
    assert list(faults) == [
        "worker-kill",
        "worker-term",
        "redis-pause",
        "redis-restart",
        "partition",
        "duplicate",
        "slow",
    ]
    assert {name: f["verdict"] for name, f in faults.items()} == dict.fromkeys(faults, "passed"), faults
    figures = {name: f["figures"] for name, f in faults.items()}
    assert 4 < figures["worker-kill"]["failover_seconds"] < 10  # a lease (5 s) and a reap
    assert figures["worker-kill"]["executions"] == 2 and figures["partition"]["executions"] == 3
    assert figures["worker-term"]["finished_on_its_worker"] and figures["worker-term"]["executions"] == 1
    assert figures["duplicate"]["executions"] == 1 and 1 <= figures["slow"]["timed_out_after_seconds"] < 2
    assert all(f["duplicates"] == 0 and f["lost"] == 0 for f in figures.values())
    page = report.read_text()
    assert page.count("<svg") == 7 and "SIGKILL" in page and "worker-kill: passed" in page
    assert probes_running() == []


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[Settings, RedisServer]]:
    """A Redis and a recorder of the test's own: the deployment the command is pointed at."""
    server = RedisServer(tmp_path / "redis").start()
    settings = Settings(home=tmp_path / "home", broker_url=server.url, log_level="WARNING")
    stack = LocalStack(settings, [], workers=0, services=("recorder",)).start()
    try:
        yield settings, server
    finally:
        stack.stop()
        server.stop()


def test_a_tightened_objective_fails_its_fault_and_nothing_of_the_commands_is_left(
    deployment: tuple[Settings, RedisServer],
) -> None:
    settings, server = deployment
    assert server.proc is not None
    env = {"CODITECT_BROKER_URL": str(settings.broker_url), "CODITECT_HOME": str(settings.home)}
    args = ["chaos", "--json", "--target", "settings", "--redis-pid", str(server.proc.pid)]
    done = run_cli([*args, "--faults", "worker-kill,duplicate,redis-restart", "--failover", "0.5"], env, timeout=180)
    assert done.returncode == 1, done.stdout + done.stderr
    faults = {f["fault"]: f for f in json.loads(done.stdout)["faults"]}
    assert faults["worker-kill"]["verdict"] == "failed"
    assert (
        "failover took" in faults["worker-kill"]["problems"][0]
        and "objective: 0.5 s" in faults["worker-kill"]["problems"][0]
    )
    assert faults["duplicate"]["verdict"] == "passed"
    assert (
        faults["redis-restart"]["verdict"] == "skipped" and "cannot be restarted" in faults["redis-restart"]["skipped"]
    )
    state = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        assert state.keys(keys.RUN_KEY_PREFIX + "*") == [] and state.zcard(keys.RUNS) == 0
        assert state.xlen(keys.HISTORY) == 0 and state.zcard(keys.UNRECORDED) == 0
    finally:
        state.close()
    assert HistoryStore.from_settings(settings).runs(50) == []
    assert probes_running() == []
