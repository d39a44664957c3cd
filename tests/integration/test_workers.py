"""Agents run as real Celery worker processes, consuming only their own queues."""

from __future__ import annotations

import dataclasses

import pytest

from coditect_tasks.app import CoditectApp, create_app
from coditect_tasks.broker import queue_depths
from coditect_tasks.demo import run_workflow
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

from ..conftest import WorkerFactory, wait_for

pytestmark = pytest.mark.integration


def test_example_agents_keep_their_contracts(app: CoditectApp, worker_factory: WorkerFactory) -> None:
    worker_factory(["echo", "emit", "sleep", "flaky", "noop"], concurrency=2)
    calls = {
        "echo": app.tasks["agents.echo"].apply_async(kwargs={"params": {"a": 1}, "upstream": {"p": [1, 2]}}),
        "emit": app.tasks["agents.emit"].apply_async(kwargs={"params": {"value": ["x", {"y": None}]}}),
        "sleep": app.tasks["agents.sleep"].apply_async(kwargs={"params": {"seconds": 0.2}}),
        "flaky": app.tasks["agents.flaky"].apply_async(kwargs={"params": {"fail_times": 2}}),
        "noop": app.tasks["agents.noop"].apply_async(),
    }
    results = {name: call.get(timeout=30) for name, call in calls.items()}
    assert results == {
        "echo": {"params": {"a": 1}, "upstream": {"p": [1, 2]}},
        "emit": ["x", {"y": None}],
        "sleep": {"slept": 0.2},
        "flaky": {"attempt": 3},
        "noop": None,
    }


def test_a_worker_consumes_only_its_agents_queues(
    app: CoditectApp, settings: Settings, worker_factory: WorkerFactory
) -> None:
    worker_factory(["echo"])
    waiting = app.tasks["agents.sleep"].apply_async(kwargs={"params": {"seconds": 0}})
    served = app.tasks["agents.echo"].apply_async(kwargs={"params": {"n": 1}})
    assert served.get(timeout=30) == {"params": {"n": 1}, "upstream": {}}
    assert queue_depths(settings.require_broker(), ["agents.sleep"]) == {"agents.sleep": 1}
    assert waiting.state == "PENDING"

    worker_factory(["sleep"])
    assert waiting.get(timeout=30) == {"slept": 0.0}
    assert queue_depths(settings.require_broker(), ["agents.sleep"]) == {"agents.sleep": 0}


def test_hard_time_limit_kills_the_call_and_the_worker_carries_on(
    settings: Settings, worker_factory: WorkerFactory
) -> None:
    modules = "workers.examples,tests.support.agents"
    app = create_app(dataclasses.replace(settings, agent_modules=tuple(modules.split(","))))
    worker_factory(["slowpoke"], extra_env={"CODITECT_AGENT_MODULES": modules})
    too_slow = app.tasks["agents.slowpoke"].apply_async(kwargs={"params": {"seconds": 5}})
    with pytest.raises(Exception, match=r"SoftTimeLimitExceeded|TimeLimitExceeded"):
        too_slow.get(timeout=30)
    fast = app.tasks["agents.slowpoke"].apply_async(kwargs={"params": {"seconds": 0}})
    assert fast.get(timeout=30) == {"slept": 0.0}
    app.close()


def test_first_workflow_fans_out_and_joins_through_a_chord(
    app: CoditectApp, worker_factory: WorkerFactory, registry: Registry
) -> None:
    worker_factory(["emit"])
    worker_factory(["echo"], concurrency=2)
    seen: list[tuple[str, int]] = []
    outcome = run_workflow(app, ["a", "b", "c"], timeout=30, on_progress=lambda s: seen.append((s.name, s.done)))
    assert outcome["status"] == "succeeded"
    reviews = outcome["result"]["upstream"]["review"]
    assert [r["params"]["item"] for r in reviews] == ["a", "b", "c"]
    assert all(r["upstream"] == {"plan": ["a", "b", "c"]} for r in reviews)
    assert [s["step"] for s in outcome["steps"]] == ["plan", "review", "summarize"]
    assert all(s["seconds"] >= 0 for s in outcome["steps"])
    assert ("summarize", 1) in seen and ("review", 3) in seen


def test_a_failing_call_fails_the_workflow_clearly(app: CoditectApp, worker_factory: WorkerFactory) -> None:
    worker_factory(["flaky"])
    call = app.tasks["agents.flaky"].apply_async(kwargs={"params": {"fail_times": 99}})
    with pytest.raises(Exception, match="attempt 6 fails on purpose"):
        call.get(timeout=30)
    wait_for(lambda: call.state == "FAILURE", 5, "the failure to be stored")
