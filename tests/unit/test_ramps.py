"""Ramps, with no Redis: each run's version is drawn from its id (the same everywhere), the share
follows the percent, and a ramp moves on only in the ways that keep every run's version clear."""

from __future__ import annotations

import uuid

import pytest

from coditect_tasks import agent
from coditect_tasks.agents import Agent, base_name, load_agents, versioned
from coditect_tasks.errors import AgentDeclarationError, InvalidArgumentError
from coditect_tasks.submitting.ramps import Ramp, changed, routes


def test_a_run_is_pinned_by_its_id_alone_and_the_share_follows_the_percent() -> None:
    ramp = Ramp("coder", base="1", to="2", percent=10)
    ids = [uuid.uuid4().hex for _ in range(20_000)]
    picks = [ramp.pick(run_id) for run_id in ids]
    assert picks == [Ramp("coder", base="1", to="2", percent=10).pick(run_id) for run_id in ids]
    assert set(picks) == {"1", "2"}
    assert 0.09 < picks.count("2") / len(ids) < 0.11
    # a wider ramp keeps every run the narrower one sent to 2 on 2
    wider = Ramp("coder", base="1", to="2", percent=30)
    assert all(wider.pick(run_id) == "2" for run_id, pick in zip(ids, picks, strict=True) if pick == "2")
    # another agent's ramp draws on its own: not the same runs
    other = [Ramp("reviewer", to="2", percent=10).pick(run_id) for run_id in ids]
    assert sum(a == "2" and b == "2" for a, b in zip(picks, other, strict=True)) < 0.02 * len(ids)
    assert {Ramp("coder", to="2", percent=0).pick(i) for i in ids} == {""}
    assert {Ramp("coder", to="2", percent=100).pick(i) for i in ids} == {"2"}


def test_a_ramp_that_reached_100_percent_is_the_base_of_the_next() -> None:
    first = changed(None, "coder", "2", 10, None)
    assert first == Ramp("coder", None, "2", 10)
    assert changed(first, "coder", "2", 100, None) == Ramp("coder", None, "2", 100)
    assert changed(Ramp("coder", None, "2", 100), "coder", "3", 5, None) == Ramp("coder", "2", "3", 5)
    assert changed(None, "coder", "2", 10, "1") == Ramp("coder", "1", "2", 10)


@pytest.mark.parametrize(
    ("current", "to", "percent", "base", "problem"),
    [
        (Ramp("coder", None, "2", 10), "3", 10, None, "is ramping to version 2 \\(10 %\\)"),
        (None, "2", 101, None, "percent must be from 0 to 100"),
        (None, "2", -1, None, "percent must be from 0 to 100"),
        (Ramp("coder", "2"), "2", 10, None, "version 2 is the base already"),
        (None, "two words", 10, None, "version 'two words' must match"),
    ],
)
def test_a_ramp_that_would_blur_a_runs_version_is_refused(
    current: Ramp | None, to: str, percent: float, base: str | None, problem: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=problem):
        changed(current, "coder", to, percent, base)


def test_versions_are_keys_queues_and_tasks_of_their_own() -> None:
    v2 = agent("coder", version="2")(lambda call: None)
    assert (v2.key, v2.queue, v2.task_name) == ("coder@2", "agents.coder@2", "agents.coder@2")
    assert Agent("coder", fn=lambda call: None).queue == "agents.coder"
    assert versioned("coder", "2") == "coder@2" and versioned("coder", None) == "coder"
    assert base_name("coder@2") == "coder" and base_name("coder") == "coder"
    assert routes({"coder": "2", "reviewer": ""}) == {"coder": "coder@2", "reviewer": "reviewer"}
    with pytest.raises(AgentDeclarationError, match="version 'v 2' must match"):
        agent("coder", version="v 2")
    found = load_agents(["tests.support.agents"])
    assert found["versioned"].version is None and found["versioned@2"].version == "2"
