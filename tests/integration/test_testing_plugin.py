"""DAG semantics through ``coditect_tasks.testing``: what a user's own tests look like (a real
embedded Redis, a worker in the test process), and fast enough for many small cases."""

from __future__ import annotations

import pytest

from coditect_tasks import Dag
from coditect_tasks.testing import Harness

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("plugin")]  # one in-process worker


def test_each_node_receives_its_own_predecessors_results(coditect: Harness) -> None:
    dag = Dag("diamond")
    dag.node("a", "emit", params={"value": 1})
    dag.node("b", "echo", params={"side": "b"}, after=["a"])
    dag.node("c", "emit", params={"value": 3}, after=["a"])
    dag.node("d", "echo", after=["b", "c"])
    results = coditect.run(dag).results()
    assert results["d"]["upstream"] == {"b": {"params": {"side": "b"}, "upstream": {"a": 1}}, "c": 3}


def test_a_foreach_over_a_predecessors_list_keeps_item_order(coditect: Harness) -> None:
    dag = Dag("fan")
    dag.node("plan", "emit", params={"value": ["x", "y", "z"]})
    dag.node("each", "echo", foreach="plan", after=["plan"])
    results = coditect.run(dag).results()
    assert [r["params"]["item"] for r in results["each"]] == ["x", "y", "z"]


def test_a_failure_skips_what_depends_on_it_and_fails_the_run(coditect: Harness) -> None:
    dag = Dag("broken")
    dag.node("bad", "flaky", params={"fail_times": 99}, retries=0)
    dag.node("after", "echo", after=["bad"])
    dag.node("aside", "emit", params={"value": "independent"})
    run = coditect.run(dag, expect="failed")
    nodes = run.status()["nodes"]
    assert (nodes["bad"]["status"], nodes["after"]["status"]) == ("failed", "skipped")
    assert "attempt 1 fails on purpose" in nodes["bad"]["error"]
