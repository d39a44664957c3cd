"""The chaos command's verdicts and report, with no process (``coditect_tasks.chaos``)."""

from __future__ import annotations

import pytest

from coditect_tasks.chaos.faults import Outcome
from coditect_tasks.chaos.report import document, page
from coditect_tasks.chaos.target import ComposeTarget
from coditect_tasks.chaos.verdicts import Objectives, judge
from coditect_tasks.errors import ConfigError
from coditect_tasks.settings import Settings


def outcome(**figures: object) -> Outcome:
    base: dict[str, object] = {"run_seconds": 3.0, "executions": 1, "duplicates": 0, "lost": 0}
    return Outcome("worker-kill", figures={**base, **figures}, timeline=[(0.5, "work running")], acts=[(0.0, "kill")])


def test_each_missed_objective_is_one_problem_naming_it() -> None:
    assert judge(outcome(failover_seconds=6.0), Objectives()).verdict == "passed"
    missed = judge(outcome(failover_seconds=6.0, duplicates=1, lost=1, run_seconds=40.0), Objectives(failover=0.5))
    assert missed.verdict == "failed"
    assert missed.problems == [
        "1 probe run(s) lost (objective: at most 0)",
        "1 node(s) succeeded twice (objective: at most 0)",
        "failover took 6 s (objective: 0.5 s)",
        "the probe run took 40 s (objective: 30 s)",
    ]
    assert judge(outcome(failover_seconds=None), Objectives()).problems == ["no work went on after the fault"]
    skipped = Outcome("redis-restart", skipped="cannot restart here")
    assert judge(skipped, Objectives()).verdict == "skipped" and skipped.problems == []


def test_the_report_has_a_timeline_per_fault_run_and_escapes_what_it_shows() -> None:
    ran = judge(outcome(failover_seconds=6.0), Objectives())
    ran.problems.append("<script>x</script>")
    outcomes = [ran, Outcome("redis-restart", skipped="no way to restart")]
    html = page(outcomes, Objectives())
    assert html.count("<svg") == 1 and "<script>x" not in html and "&lt;script&gt;" in html
    assert "redis-restart</td><td class=skipped>skipped" in html
    doc = document(outcomes, Objectives())
    assert doc["passed"] is False and doc["faults"][0]["timeline"][0] == {"at": 0.0, "what": "kill", "by": "fault"}


def test_a_compose_target_needs_the_docker_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="--compose: the docker command is not on PATH"):
        ComposeTarget(Settings(), "stack")
