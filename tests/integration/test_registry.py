"""Agent discovery: workers register, heartbeat, and vanish when they die."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from coditect_tasks.app import create_app
from coditect_tasks.registry import TTL, Registry
from coditect_tasks.settings import Settings

from ..conftest import ROOT, WorkerFactory, run_cli, wait_for

pytestmark = pytest.mark.integration


def _agents_json(settings: Settings) -> dict[str, dict[str, object]]:
    result = run_cli(["agents", "--json"], {"CODITECT_BROKER_URL": settings.require_broker()})
    assert result.returncode == 0, result.stderr
    data: dict[str, dict[str, object]] = json.loads(result.stdout)["agents"]
    return data


def test_agents_lists_live_workers_and_queue_depth(settings: Settings, worker_factory: WorkerFactory) -> None:
    worker = worker_factory(["echo", "noop"], concurrency=2)
    app = create_app(settings)
    for _ in range(3):
        app.tasks["agents.sleep"].apply_async(kwargs={"params": {"seconds": 0}})
    app.close()

    agents = _agents_json(settings)
    assert set(agents) == {"echo", "emit", "sleep", "flaky", "noop", "plan", "talk"}
    for name in ("echo", "noop"):
        (entry,) = agents[name]["workers"]  # type: ignore[misc]
        assert entry["hostname"] == worker.hostname
        assert entry["pid"] == worker.pid
        assert entry["concurrency"] == 2
    assert agents["sleep"]["workers"] == []
    assert agents["sleep"]["queue_depth"] == 3
    assert agents["echo"]["queue_depth"] == 0


def test_a_sigkilled_worker_disappears_within_ten_seconds(worker_factory: WorkerFactory, registry: Registry) -> None:
    victim = worker_factory(["echo"])
    survivor = worker_factory(["echo"])
    victim.kill()
    seconds = wait_for(
        lambda: victim.hostname not in {w.hostname for w in registry.workers()}, 10, "the dead worker to vanish"
    )
    print(f"SIGKILLed worker left the registry after {seconds:.2f} s (TTL {TTL} s)")
    assert [w.hostname for w in registry.by_agent()["echo"]] == [survivor.hostname]


def test_a_stopped_worker_withdraws_at_once(worker_factory: WorkerFactory, registry: Registry) -> None:
    worker = worker_factory(["emit"])
    worker.stop()
    assert worker.hostname not in {w.hostname for w in registry.workers()}


def test_workers_of_other_hosts_show_even_if_their_agents_are_not_declared_here(
    registry: Registry, settings: Settings
) -> None:
    from coditect_tasks.registry import WorkerInfo

    registry.beat(WorkerInfo("gpu-1@far", os.getpid(), ("coder",), 8, 0.0))
    agents = _agents_json(settings)
    assert agents["coder"]["declared"] is False
    assert [w["hostname"] for w in agents["coder"]["workers"]] == ["gpu-1@far"]  # type: ignore[attr-defined]


def test_two_pools_on_one_host_are_two_workers_and_a_live_name_is_refused(
    settings: Settings, registry: Registry
) -> None:
    """The README tour's step 4: a second pool started without --hostname is a worker of its own."""
    env = {**os.environ, **settings.environment(), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "coditect_tasks", "worker", "--agents", "echo", "--concurrency", "1"]
    pools = [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(2)
    ]
    try:
        wait_for(lambda: len(registry.workers()) == 2, 30, "both pools to register under their own names")
        names = sorted(w.hostname for w in registry.workers())
        assert all(name.startswith("echo-") for name in names), names
        result = run_cli(["worker", "--agents", "echo", "--hostname", names[0]], settings.environment())
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "already live" in lines[0] and names[0] in lines[0], result.stderr
        assert sorted(w.hostname for w in registry.workers()) == names
    finally:
        for pool in pools:
            os.killpg(pool.pid, signal.SIGTERM)
        for pool in pools:
            pool.wait(timeout=30)
