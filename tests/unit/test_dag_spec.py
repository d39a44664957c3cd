"""The DAG model and its validation: every bad input is one clear line naming file and node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coditect_tasks.dag.graph import mermaid
from coditect_tasks.dag.plan import validate
from coditect_tasks.dag.spec import Dag
from coditect_tasks.errors import CycleError, DagError, DagTooLargeError, MalformedDagError

AGENTS = {"echo", "emit", "sleep", "flaky", "noop"}
ROOT = Path(__file__).resolve().parents[2]


def _laughs() -> str:
    """A "billion laughs" document: ten aliases of ten aliases …, 10^8 strings once expanded."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 8)]
    return "\n".join(lines) + "\n"


def test_the_example_file_loads_and_plans() -> None:
    dag = Dag.load(ROOT / "examples" / "release.yaml")
    plan = validate(dag, AGENTS)
    assert plan.roots == ["plan"]
    assert plan.preds["publish"] == ["review", "docs"]
    assert plan.succs["plan"] == ["build", "docs"]
    assert dag.nodes["review"].foreach == "plan"
    assert plan.order.index("plan") < plan.order.index("build") < plan.order.index("review")


def test_python_builder_and_yaml_give_the_same_model() -> None:
    built = Dag("pair")
    first = built.node("a", "emit", params={"value": [1, 2]})
    built.node("b", "echo", after=[first], foreach="a", retries=2, timeout=5)
    loaded = Dag.from_text(
        "name: pair\nnodes:\n- {id: a, agent: emit, params: {value: [1, 2]}}\n"
        "- {id: b, agent: echo, after: [a], foreach: a, retries: 2, timeout: 5}\n",
        "pair.yaml",
    )
    assert built.to_json() == loaded.to_json()
    assert Dag.from_json(json.loads(json.dumps(built.to_json()))).to_json() == built.to_json()


def _invalid(text: str, name: str = "bad.yaml") -> DagError:
    with pytest.raises(DagError) as info:
        validate(Dag.from_text(text, name), AGENTS)
    assert "\n" not in str(info.value)
    return info.value


def test_a_cycle_is_named_in_order() -> None:
    error = _invalid(
        "name: c\nnodes:\n- {id: a, agent: noop}\n- {id: b, agent: noop, after: [a, d]}\n"
        "- {id: c, agent: noop, after: [b]}\n- {id: d, agent: noop, after: [c]}\n"
    )
    assert isinstance(error, CycleError)
    assert error.cycle in (["b", "c", "d", "b"], ["c", "d", "b", "c"], ["d", "b", "c", "d"])
    assert str(error).startswith("bad.yaml: dependency cycle ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: x\nnodes:\n- {id: a, agent: coder}\n",
            "bad.yaml: node 'a': agent: unknown agent 'coder' (known: echo, emit, flaky, noop, sleep)",
        ),
        (
            "name: x\nnodes:\n- {id: a, agent: noop, after: [ghost]}\n",
            "bad.yaml: node 'a': 'after' names missing node 'ghost'",
        ),
        ("name: x\nnodes:\n- {id: a, agent: noop, foreach: ghost}\n", "node 'a': 'foreach' names missing node 'ghost'"),
        (
            "name: x\nnodes:\n- {id: a, agent: noop}\n- {id: b, agent: noop}\n- {id: c, agent: echo, foreach: a, after: [b]}\n",
            "bad.yaml: node 'c': 'foreach' names 'a', which is not a predecessor",
        ),
        (
            "name: x\nnodes:\n- {id: a, agent: noop, fallback: nobody}\n",
            "node 'a': fallback agent: unknown agent 'nobody'",
        ),
        ("name: x\nnodes:\n- {id: a, agent: noop}\n- {id: a, agent: echo}\n", "bad.yaml: node 'a': duplicate node id"),
        ("name: x\nnodes:\n- {id: a, agent: noop, params: {x: .nan}}\n", "node 'a': params are not JSON-serialisable"),
        (
            "name: x\nnodes:\n- {id: a, agent: noop, foreach: a}\n",
            "bad.yaml: node 'a': 'foreach' names the node itself",
        ),
    ],
)
def test_graph_errors_name_file_and_node(text: str, message: str) -> None:
    assert message in str(_invalid(text))


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        ("name: x\nnodes: [\n", "bad.yaml", "bad.yaml: not valid YAML"),
        ('{"name": "x", "nodes": [}', "bad.json", "bad.json: not valid JSON"),
        ("- just a list\n", "bad.yaml", "top level must be a mapping"),
        ("name: x\nnodes: []\n", "bad.yaml", "'nodes' must be a non-empty list"),
        ("name: x\nnodes:\n- {id: 'has space', agent: noop}\n", "bad.yaml", "nodes[0]: 'id' must be a string"),
        ("name: x\nnodes:\n- {id: a}\n", "bad.yaml", "node 'a': 'agent' must be a non-empty string"),
        ("name: x\nnodes:\n- {id: a, agent: noop, params: [1]}\n", "bad.yaml", "node 'a': 'params' must be a mapping"),
        ("name: x\nnodes:\n- {id: a, agent: noop, retries: -1}\n", "bad.yaml", "'retries' must be a whole number"),
        ("name: x\nnodes:\n- {id: a, agent: noop, timeout: 0}\n", "bad.yaml", "'timeout' must be a positive number"),
        (
            "name: x\nnodes:\n- {id: a, agent: noop, timeout: 90000}\n",
            "bad.yaml",
            "'timeout' of 90000 s is over the limit of 86400 s",
        ),
        ("name: x\nnodes:\n- {id: a, agent: noop, colour: red}\n", "bad.yaml", "node 'a': unknown field(s) colour"),
        ("name: x\nname: y\nnodes:\n- {id: a, agent: noop}\n", "bad.yaml", "duplicate mapping key: 'name'"),
        ("name: !!python/object:os.system x\nnodes: []\n", "bad.yaml", "not valid YAML"),
        ("name: x\nnodes: [" + ", ".join(["{id: a, agent: noop}"] * 3) + "]\n" + _laughs(), "bad.yaml", "alias"),
    ],
)
def test_malformed_files_are_one_line(text: str, name: str, message: str) -> None:
    with pytest.raises(MalformedDagError) as info:
        Dag.from_text(text, name)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_dag_files_are_yaml_1_2() -> None:
    """Plain words stay strings (YAML 1.1's yes/no/on/off booleans are gone), as in JSON."""
    dag = Dag.from_text("name: x\nnodes:\n- {id: a, agent: noop, params: {answer: no, mode: on, flag: true}}\n")
    assert dag.nodes["a"].params == {"answer": "no", "mode": "on", "flag": True}


def test_params_that_are_not_json_are_refused_before_anything_runs() -> None:
    dag = Dag("objects")
    dag.node("a", "echo", params={"when": object()})
    with pytest.raises(DagError, match=r"<dag objects>: node 'a': params are not JSON-serialisable"):
        validate(dag, AGENTS)


def test_oversized_params_and_dags_are_refused() -> None:
    dag = Dag("big")
    dag.node("a", "echo", params={"blob": "x" * 2000})
    with pytest.raises(DagError, match="over the limit of 1000"):
        validate(dag, AGENTS, max_params_bytes=1000)
    for i in range(5):
        dag.node(f"n{i}", "noop")
    with pytest.raises(DagTooLargeError, match="6 nodes exceed the maximum of 5"):
        validate(dag, AGENTS, max_nodes=5)


def test_names_documents_and_foreach_lists_over_their_limits_are_refused(tmp_path: Path) -> None:
    long = Dag("n" * 201)
    long.node("a", "noop")
    with pytest.raises(DagError, match=r"'name' must be at most 200 printable characters \(201 given\)"):
        validate(long, AGENTS)
    control = Dag("bell\a")
    control.node("a", "noop")
    with pytest.raises(DagError, match="printable"):
        validate(control, AGENTS)
    fan = Dag("fan")
    fan.node("a", "echo", foreach=list(range(6)))
    with pytest.raises(DagError, match="node 'a': 'foreach' has 6 items, over the limit of 5"):
        validate(fan, AGENTS, max_foreach_items=5)
    text = "name: x\nnodes:\n- {id: a, agent: noop}\n"
    with pytest.raises(DagTooLargeError, match=f"the document is {len(text)} bytes, over the limit of 20"):
        Dag.from_text(text, "x.yaml", max_bytes=20)
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(DagTooLargeError, match=f"x.yaml: the document is {len(text)} bytes"):
        Dag.load(path, max_bytes=20)
    assert Dag.load(path).name == "x"


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MalformedDagError, match="cannot read"):
        Dag.load(tmp_path / "missing.yaml")


def test_mermaid_draws_nodes_edges_and_states() -> None:
    dag = Dag.load(ROOT / "examples" / "release.yaml").to_json()
    text = mermaid(dag, {"plan": "succeeded", "build": "failed", "review": "skipped"})
    assert text.startswith("flowchart TD\n")
    assert "    plan --> build\n" in text and "    review --> publish\n" in text
    assert 'review["review<br/><small>echo ×N</small>"]' in text
    assert "    class build failed\n" in text and "    class plan succeeded\n" in text


def test_benchmark_edge_latency_is_successor_start_minus_predecessor_finish() -> None:
    from coditect_tasks.bench import edge_latencies_ms, percentile

    doc = {
        "nodes": {
            "a": {"started_at": "2026-01-01T00:00:00.000000+00:00", "finished_at": "2026-01-01T00:00:00.001000+00:00"},
            "b": {"started_at": "2026-01-01T00:00:00.003500+00:00", "finished_at": "2026-01-01T00:00:00.004000+00:00"},
            "c": {"started_at": "2026-01-01T00:00:00.005000+00:00", "finished_at": "2026-01-01T00:00:00.006000+00:00"},
        }
    }
    assert edge_latencies_ms(doc) == pytest.approx([2.5, 1.0])
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 99) == 5.0
