"""``bench --footprint``'s measures, on a real Redis: keys grouped by kind, and what a retired run keeps."""

from __future__ import annotations

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import CoditectApp
from coditect_tasks.footprint import bytes_by_kind, key_kind
from coditect_tasks.registry import Registry


def test_a_queued_runs_keys_are_counted_by_kind(app: CoditectApp, registry: Registry) -> None:
    for _ in range(3):
        dag = Dag("single")
        dag.node("only", "noop")
        submit(dag, app)
    kinds = bytes_by_kind(registry.client, f"{keys.PREFIX}*")
    run_kinds = {kind: v for kind, v in kinds.items() if kind.startswith(f"{keys.RUN_KEY_PREFIX}<run>:")}
    assert {kind.rsplit(":", 1)[1] for kind in run_kinds} >= {"run", "status", "node"}
    assert all(v["keys"] == 3 and v["bytes"] > 0 for v in run_kinds.values())
    assert kinds[keys.HISTORY]["keys"] == 1
    assert list(kinds.values()) == sorted(kinds.values(), key=lambda v: -v["bytes"])  # biggest first


def test_a_keys_kind_leaves_out_its_run_and_task_ids() -> None:
    run = keys.new_run_id()
    assert key_kind(keys.run_prefix(run) + "status") == f"{keys.RUN_KEY_PREFIX}<run>:status"
    assert key_kind("celery-task-meta-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0") == "celery-task-meta-<id>"
    assert key_kind(keys.HISTORY) == keys.HISTORY
