from __future__ import annotations

from pathlib import Path

import pytest

from coditect_tasks.agents import MAX_TIMEOUT, AgentCall, agent, load_agents, route, select
from coditect_tasks.app import create_app
from coditect_tasks.errors import AgentDeclarationError, UnknownAgentError
from coditect_tasks.settings import Settings

EXAMPLES = {"echo", "emit", "sleep", "flaky", "noop", "plan", "talk"}


def test_example_agents_are_discovered() -> None:
    assert set(load_agents(["workers.examples"])) == EXAMPLES


def test_example_contracts_called_directly() -> None:
    agents = load_agents(["workers.examples"])
    assert agents["echo"](AgentCall({"a": 1}, {"up": [2]})) == {"params": {"a": 1}, "upstream": {"up": [2]}}
    assert agents["emit"](AgentCall({"value": ["x", 1]}, {})) == ["x", 1]
    assert agents["sleep"](AgentCall({"seconds": 0}, {})) == {"slept": 0.0}
    assert agents["noop"](AgentCall({}, {})) is None
    spawned = agents["plan"](AgentCall({"items": ["a", "b"], "agent": "echo"}, {}, node_id="plan"))
    assert [d.nodes["work"].params for d in spawned.dags] == [{"item": "a"}, {"item": "b"}]
    flaky = agents["flaky"]
    with pytest.raises(RuntimeError, match="attempt 2 fails"):
        flaky(AgentCall({"fail_times": 2}, {}, attempt=2))
    assert flaky(AgentCall({"fail_times": 2}, {}, attempt=3)) == {"attempt": 3}


def test_unknown_agent_names_the_known_ones() -> None:
    with pytest.raises(UnknownAgentError) as info:
        select(load_agents(["workers.examples"]), ["echo", "coder"])
    assert info.value.name == "coder"
    assert str(info.value) == "unknown agent 'coder' (known: echo, emit, flaky, noop, plan, sleep, talk)"


def test_unimportable_agent_module_is_one_clear_line() -> None:
    with pytest.raises(AgentDeclarationError, match=r"cannot import 'no\.such\.module'"):
        load_agents(["no.such.module"])


def test_the_same_name_declared_twice_is_refused() -> None:
    with pytest.raises(AgentDeclarationError, match="declared twice"):
        load_agents(["workers.examples", "tests.support.duplicate_agents"])


@pytest.mark.parametrize("name", ["Coder", "1st", "has space", "a.b", ""])
def test_agent_names_must_be_queue_safe(name: str) -> None:
    with pytest.raises(AgentDeclarationError):
        agent(name)


def test_soft_timeout_above_hard_timeout_is_refused() -> None:
    with pytest.raises(AgentDeclarationError, match="soft_timeout"):
        agent("slow", timeout=10, soft_timeout=20)


def test_router_sends_agent_tasks_to_their_own_queue() -> None:
    assert route("agents.coder", (), {}, {}) == {"queue": "agents.coder"}
    assert route("celery.chord_unlock", (), {}, {}) is None


def test_app_binds_agents_with_their_limits_and_safe_defaults() -> None:
    settings = Settings(broker_url="redis://127.0.0.1:1/0")
    declared = load_agents(["workers.examples", "tests.support.agents"])
    app = create_app(settings, declared)
    task = app.tasks["agents.slowpoke"]
    assert task.queue == "agents.slowpoke"
    assert (task.soft_time_limit, task.time_limit) == (0.5, 1.0)
    assert task.acks_late and task.reject_on_worker_lost
    assert app.conf.task_serializer == app.conf.result_serializer == "json"
    assert app.conf.accept_content == ["json"]
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.amqp.router.route({}, "agents.echo")["queue"].name == "agents.echo"


@pytest.mark.parametrize("timeout", [0, -1, 86401])
def test_agent_timeouts_stay_within_the_brokers_visibility_timeout(timeout: float) -> None:
    with pytest.raises(AgentDeclarationError, match="timeout must be over 0 and at most 86400 s"):
        agent("slow", timeout=timeout)(lambda call: None)


def test_the_broker_never_redelivers_a_call_within_its_time_limit(tmp_path: Path) -> None:
    """kombu's Redis transport redelivers after its visibility timeout (default one hour)."""
    app = create_app(Settings(home=tmp_path, broker_url="redis://127.0.0.1:1/0"))
    assert app.conf.broker_transport_options["visibility_timeout"] > MAX_TIMEOUT >= 24 * 3600
    app.close()
