"""Limits as values: what a declaration accepts, and what a node holds (resolved from its params)."""

from __future__ import annotations

import pytest

from coditect_tasks import Dag, Limit, agent
from coditect_tasks.errors import AgentDeclarationError, DagError, InvalidArgumentError, MalformedDagError
from coditect_tasks.limits import change, holds


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({}, "give concurrency, rate, or both"),
        ({"concurrency": 0}, "concurrency must be a whole number ≥ 1"),
        ({"concurrency": 1.5}, "concurrency must be a whole number ≥ 1"),
        ({"concurrency": True}, "concurrency must be a whole number ≥ 1"),
        ({"rate": 0}, "rate must be a positive number"),
        ({"rate": float("inf")}, "rate must be a positive number"),
        ({"rate": 1, "per": 0}, "per must be a positive number of seconds"),
        ({"rate": 1, "per": 86401}, "per must be a positive number of seconds, at most 86400"),
        ({"concurrency": 1, "key": ""}, "key must name a parameter"),
        ({"rate": 1, "units": 3}, "units must name a parameter"),
    ],
)
def test_a_limit_that_cannot_work_is_refused_with_its_reason(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidArgumentError, match=f"limit 'openai': {problem}"):
        Limit("openai", **kwargs)  # type: ignore[arg-type]


def test_a_limit_name_must_be_plain() -> None:
    with pytest.raises(InvalidArgumentError, match="the name must match"):
        Limit("Open AI", concurrency=1)


def test_a_limit_round_trips_through_json_and_describes_itself() -> None:
    limit = Limit("tokens", rate=20, per=2, key="repo", units="tokens")
    assert Limit.from_json("tokens", limit.to_json()) == limit
    assert limit.describe() == "20 tokens / 2 s per repo"
    assert Limit("repo", concurrency=1, key="repo").describe() == "1 at once per repo"


def test_a_node_holds_its_agents_limits_and_its_own_resolved_from_its_params() -> None:
    known = {
        "repo": Limit("repo", concurrency=1, key="repo"),
        "tokens": Limit("tokens", rate=100, units="tokens"),
        "plain": Limit("plain", concurrency=3),
    }
    params = {"repo": "acme/api", "tokens": 42}
    assert holds("f.yaml", "n", params, ["repo", "tokens", "plain", "repo"], known) == [
        ["repo", "acme/api", 1],
        ["tokens", "", 42],
        ["plain", "", 1],
    ]
    assert holds("f.yaml", "n", {"repo": {"b": 1, "a": 2}}, ["repo"], known) == [["repo", '{"a": 2, "b": 1}', 1]]
    assert holds("f.yaml", "n", {}, ["tokens"], known) == [["tokens", "", 1]]  # units default to 1


@pytest.mark.parametrize(
    ("params", "names", "problem"),
    [
        ({}, ["openai"], r"unknown limit 'openai' \(known: repo, tokens\)"),
        ({}, ["repo"], r"limit 'repo' is per params\['repo'\], which the node does not set"),
        ({"tokens": -1}, ["tokens"], r"limit 'tokens': params\['tokens'\] must be a positive number"),
        ({"tokens": "many"}, ["tokens"], r"limit 'tokens': params\['tokens'\] must be a positive number"),
    ],
)
def test_what_a_node_cannot_hold_names_the_node(params: dict[str, object], names: list[str], problem: str) -> None:
    known = {"repo": Limit("repo", concurrency=1, key="repo"), "tokens": Limit("tokens", rate=100, units="tokens")}
    with pytest.raises(DagError, match=f"f.yaml: node 'n3': {problem}"):
        holds("f.yaml", "n3", params, names, known)


def test_an_operators_change_is_checked_as_a_declaration_is() -> None:
    assert change("openai", rate=300, per=60) == {"rate": 300, "per": 60}
    assert change("openai", per=30) == {"per": 30}
    with pytest.raises(InvalidArgumentError, match="limit 'openai': give concurrency, rate or per"):
        change("openai")
    with pytest.raises(InvalidArgumentError, match="limit 'openai': concurrency must be"):
        change("openai", concurrency=0)


def test_dag_nodes_name_limits_in_python_and_in_yaml() -> None:
    dag = Dag("d")
    dag.node("a", "coder", limits=["openai", "repo", "openai"])
    assert dag.nodes["a"].limits == ("openai", "repo")
    assert dag.to_json()["nodes"][0]["limits"] == ["openai", "repo"]
    loaded = Dag.from_text("name: d\nnodes:\n  - {id: a, agent: coder, limits: openai}\n")
    assert loaded.nodes["a"].limits == ("openai",)
    with pytest.raises(MalformedDagError, match="node 'a': 'limits' must be a list of limit names"):
        Dag.from_text("name: d\nnodes:\n  - {id: a, agent: coder, limits: [1]}\n")


def test_an_agent_declares_limits_as_values() -> None:
    repo = Limit("repo", concurrency=1, key="repo")
    declared = agent("coder", limits=[repo])(lambda call: None)
    assert declared.limits == (repo,)
    with pytest.raises(AgentDeclarationError, match=r"limits must be coditect_tasks\.Limit values"):
        agent("coder", limits=["repo"])(lambda call: None)  # type: ignore[list-item]
