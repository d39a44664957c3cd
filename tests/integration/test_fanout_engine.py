"""A foreach node's fan-out at the edges of its run: failing, cancelled, wide. Real Redis; the
engine's scripts called as a worker calls them."""

from __future__ import annotations

import json
import time

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import CoditectApp
from coditect_tasks.client import DagRun
from coditect_tasks.engine.taken import Taken
from coditect_tasks.engine.transitions import Engine, engine_for
from coditect_tasks.registry import Registry


def _fan(app: CoditectApp, items: list[object]) -> tuple[DagRun, Engine, Taken]:
    dag = Dag("fan")
    dag.node("p", "echo", foreach=items)
    dag.node("x", "echo")
    run = submit(dag, app)
    engine = engine_for(app.settings.state_url)
    taken = engine.begin(run.id, "p", "w1", f"{run.id}:p:1")
    assert taken is not None
    return run, engine, taken


def test_a_fan_out_after_the_run_began_to_fail_ends_the_run(app: CoditectApp) -> None:
    run, engine, taken = _fan(app, [1, 2])
    x = engine.begin(run.id, "x", "w1", f"{run.id}:x:1")
    assert x is not None and engine.fail(run.id, "x", x.token, "boom")
    assert not engine.fan_out(run.id, "p", taken.token, taken.record, [1, 2])  # the run starts nothing new
    doc = run.status()
    assert doc["status"] == "failed"
    assert doc["nodes"]["p"]["status"] == "skipped"


def test_cancelling_a_fanned_out_run_ends_it_and_its_node(app: CoditectApp, registry: Registry) -> None:
    run, engine, taken = _fan(app, [1, 2, 3])
    assert engine.fan_out(run.id, "p", taken.token, taken.record, [1, 2, 3])
    item = engine.begin(run.id, "p#0", "w1", f"{run.id}:p#0:1")
    assert item is not None
    assert run.cancel()
    assert run.progress() == (2, "cancelled")
    assert run.status()["nodes"]["p"]["status"] == "cancelled"
    engine.complete(run.id, "p#0", item.token, "1")  # a running item finishes after the cancel
    assert run.status()["nodes"]["p"] == {**run.status()["nodes"]["p"], "status": "cancelled", "result": None}
    assert registry.client.hget(keys.run_prefix(run.id) + "run", "active") == "0"


def test_a_wide_fan_out_is_quick_and_its_items_do_not_carry_the_list(app: CoditectApp, registry: Registry) -> None:
    items = [{"path": f"src/module_{i}.py"} for i in range(10_000)]
    run, engine, taken = _fan(app, items)
    started = time.perf_counter()
    assert engine.fan_out(run.id, "p", taken.token, taken.record, items)
    seconds = time.perf_counter() - started
    print(f"fan-out of 10,000 items: {seconds * 1000:.0f} ms")
    assert registry.client.llen(keys.agent_queue("echo")) == 10_002  # the items, p and x (never popped here)
    assert seconds < 2.0
    item = engine.begin(run.id, "p#9999", "w1", f"{run.id}:p#9999:1")
    assert item is not None and item.items == {"path": "src/module_9999.py"}
    assert item.record["items"] is None  # each item begins without the whole list
    assert len(json.dumps(item.record)) < 500


def test_once_a_fan_out_completes_its_items_leave_no_state(app: CoditectApp, registry: Registry) -> None:
    """The node's result holds its items' results: their statuses, results and marks go with them."""
    run, engine, taken = _fan(app, ["a", "b", "c"])
    assert engine.fan_out(run.id, "p", taken.token, taken.record, ["a", "b", "c"])
    prefix = keys.run_prefix(run.id)
    assert {"~p#0", "~p#1", "~p#2"} <= set(registry.client.hkeys(prefix + "node"))  # their message seqs
    for k in range(3):
        item = engine.begin(run.id, f"p#{k}", "w1", f"{run.id}:p#{k}:1")
        assert item is not None and engine.complete(run.id, f"p#{k}", item.token, json.dumps(k))
    assert run.status()["nodes"]["p"]["result"] == [0, 1, 2]
    assert not [f for f in registry.client.hkeys(prefix + "node") if "#" in f and f != "#" and not f.startswith("#")]
    assert not [f for f in registry.client.hkeys(prefix + "status") if "#" in f]
