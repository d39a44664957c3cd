"""DAG runs on real Redis and real worker processes."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime
from pathlib import Path

import pytest
import redis

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import CoditectApp
from coditect_tasks.client import Client, DagRun
from coditect_tasks.engine.transitions import engine_for
from coditect_tasks.errors import CycleError, DagError, RunNotFoundError
from coditect_tasks.history.recorder import Recorder
from coditect_tasks.redis_server import RedisServer
from coditect_tasks.settings import Settings

from ..conftest import ROOT, WorkerFactory, run_cli, wait_for

pytestmark = pytest.mark.integration
ALL = ["echo", "emit", "sleep", "flaky", "noop"]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_fast_branch_does_not_wait_for_a_slow_sibling(app: CoditectApp, worker_factory: WorkerFactory) -> None:
    worker_factory(["sleep"])
    worker_factory(["noop", "echo"])
    dag = Dag("branches")
    dag.node("start", "noop")
    dag.node("slow", "sleep", params={"seconds": 1.5}, after=["start"])
    dag.node("fast", "noop", after=["start"])
    dag.node("after_fast", "echo", params={"n": 1}, after=["fast"])
    dag.node("join", "echo", after=["slow", "after_fast"])
    run = submit(dag, app)
    assert run.wait(30) == "succeeded"
    nodes = run.status()["nodes"]
    assert _at(nodes["after_fast"]["started_at"]) < _at(nodes["slow"]["finished_at"])
    assert _at(nodes["join"]["started_at"]) >= _at(nodes["slow"]["finished_at"])
    assert run.results()["join"] == {
        "params": {},
        "upstream": {"slow": {"slept": 1.5}, "after_fast": {"params": {"n": 1}, "upstream": {"fast": None}}},
    }


def test_foreach_over_a_literal_and_over_a_predecessor(app: CoditectApp, worker_factory: WorkerFactory) -> None:
    worker_factory(ALL, concurrency=2)
    run = submit(Dag.load(ROOT / "examples" / "release.yaml"), app)
    assert run.wait(30) == "succeeded"
    results = run.results()
    assert [r["params"]["item"] for r in results["review"]] == ["parser", "linter", "packager"]
    assert all(r["upstream"] == {"build": {"slept": 0.5}} for r in results["review"])
    assert results["publish"]["upstream"]["docs"] == {"slept": 0.2}

    literal = Dag("literal")
    literal.node("each", "echo", params={"k": "v"}, foreach=[3, 1, 2])
    literal.node("none", "echo", foreach=[])
    run = submit(literal, app)
    assert run.wait(30) == "succeeded"
    assert [r["params"] for r in run.results()["each"]] == [{"k": "v", "item": i} for i in (3, 1, 2)]
    assert run.results()["none"] == []


def test_retries_count_attempts_and_keep_the_last_error(app: CoditectApp, worker_factory: WorkerFactory) -> None:
    worker_factory(["flaky", "noop", "echo"])
    run = submit(Dag.load(ROOT / "examples" / "flaky.json"), app)
    assert run.wait(30) == "succeeded"
    node = run.status()["nodes"]["unstable"]
    assert node["attempts"] == 3
    assert node["result"] == {"attempt": 3}
    assert node["error"] == "FlakyFailure: attempt 2 fails on purpose"


def test_a_failed_node_fails_the_run_and_skips_its_dependants(
    app: CoditectApp, settings: Settings, worker_factory: WorkerFactory
) -> None:
    worker_factory(["flaky", "sleep", "echo"], concurrency=2)
    dag = Dag("failing")
    dag.node("doomed", "flaky", params={"fail_times": 99}, retries=1)
    dag.node(
        "sibling", "sleep", params={"seconds": 3}
    )  # outlasts doomed's two attempts (a retry waits for the reaper's 1 s tick)
    dag.node("child", "echo", after=["doomed"])
    dag.node("grandchild", "echo", after=["child"])
    dag.node("later", "echo", after=["sibling"])
    path = Path(settings.home) / "failing.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dag.to_json()))
    result = run_cli(
        ["dag", "submit", str(path), "--wait", "--timeout", "30", "--json"],
        {"CODITECT_BROKER_URL": settings.require_broker(), "CODITECT_HOME": str(settings.home)},
    )
    doc = json.loads(result.stdout)
    assert result.returncode == 1, json.dumps(doc, indent=1)
    assert doc["status"] == "failed"
    statuses = {nid: n["status"] for nid, n in doc["nodes"].items()}
    assert statuses["doomed"] == "failed"
    assert statuses["child"] == statuses["grandchild"] == "skipped"
    assert statuses["sibling"] == "succeeded"  # already running: allowed to finish
    assert statuses["later"] == "skipped"  # not started before the failure: the run starts nothing new
    assert doc["nodes"]["doomed"]["attempts"] == 2
    assert "attempt 2 fails on purpose" in doc["nodes"]["doomed"]["error"]


def test_a_failing_foreach_item_fails_its_node(app: CoditectApp, worker_factory: WorkerFactory) -> None:
    worker_factory(["flaky", "echo"])
    dag = Dag("bad-item")
    dag.node("items", "flaky", foreach=[{"x": 1}, {"x": 2}], params={"fail_times": 99})
    dag.node("after", "echo", after=["items"])
    run = submit(dag, app)
    assert run.wait(30) == "failed"
    nodes = run.status()["nodes"]
    assert nodes["items"]["status"] == "failed"
    assert re.match(r"item [01]: FlakyFailure", nodes["items"]["error"])  # the first item to fail for good
    assert nodes["after"]["status"] == "skipped"


def test_a_foreach_nodes_retries_and_timeout_reach_its_items(app: CoditectApp, worker_factory: WorkerFactory) -> None:
    worker_factory(["flaky", "sleep"], concurrency=2)
    enough = Dag("item-retries-enough")  # flaky's own policy allows 5 retries; the node's count rules
    enough.node("items", "flaky", foreach=[{"x": 1}], params={"fail_times": 2}, retries=2)
    strict = Dag("item-retries-strict")
    strict.node("items", "flaky", foreach=[{"x": 1}], params={"fail_times": 2}, retries=1)
    hurried = Dag("item-timeout")  # sleep's own hard limit is 300 s; the node's is 1 s
    hurried.node("items", "sleep", foreach=[1], params={"seconds": 30}, timeout=1)
    runs = [submit(dag, app) for dag in (enough, strict, hurried)]
    assert [run.wait(30) for run in runs] == ["succeeded", "failed", "failed"]
    assert runs[0].results()["items"] == [{"attempt": 3}]
    assert runs[1].status()["nodes"]["items"]["error"] == "item 0: FlakyFailure: attempt 2 fails on purpose"
    assert runs[2].status()["nodes"]["items"]["error"] == "item 0: timed out after 0.9 s"


def test_cancel_stops_new_nodes_and_revokes_queued_ones(
    app: CoditectApp, settings: Settings, worker_factory: WorkerFactory
) -> None:
    # One slot: one sleep runs while the others wait queued. It sleeps long enough that the
    # cancel CLI (a fresh interpreter, slow on a loaded machine) always lands before it ends.
    worker_factory(["sleep", "echo"])
    dag = Dag("long")
    dag.node("first", "sleep", params={"seconds": 6})
    for i in range(3):
        dag.node(f"wide{i}", "sleep", params={"seconds": 6})
    dag.node("second", "echo", after=["first"])
    run = submit(dag, app)
    wait_for(lambda: any(n["status"] == "running" for n in run.status()["nodes"].values()), 20, "a node to start")
    result = run_cli(
        ["dag", "cancel", run.id],
        {"CODITECT_BROKER_URL": settings.require_broker(), "CODITECT_HOME": str(settings.home)},
    )
    assert result.returncode == 0, result.stderr
    assert run.wait(5) == "cancelled"
    statuses = {nid: n["status"] for nid, n in run.status()["nodes"].items()}
    assert statuses["second"] == "cancelled"
    assert list(statuses.values()).count("cancelled") >= 3
    assert not run.cancel()  # a second cancel changes nothing
    wait_for(lambda: all(n["status"] != "running" for n in run.status()["nodes"].values()), 15, "running to end")
    assert {nid: n["status"] for nid, n in run.status()["nodes"].items() if n["status"] == "cancelled"}.keys() == {
        nid for nid, st in statuses.items() if st == "cancelled"
    }


def test_history_outlives_the_live_state(
    app: CoditectApp, settings: Settings, worker_factory: WorkerFactory, recorder: Recorder
) -> None:
    worker_factory(ALL)
    run = submit(Dag.load(ROOT / "examples" / "flaky.json"), app)
    assert run.wait(30) == "succeeded"
    live = run.status()
    assert recorder.drain() > 0
    client = engine_for(app.settings.state_url).client
    client.delete(*client.keys(keys.run_prefix(run.id) + "*"))
    recorded = DagRun(run.id, Client.of(app)).status()
    assert recorded == live
    result = run_cli(
        ["dag", "status", run.id, "--json"],
        {"CODITECT_BROKER_URL": settings.require_broker(), "CODITECT_HOME": str(settings.home)},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == live
    with pytest.raises(RunNotFoundError):
        DagRun("no-such-run", Client.of(app)).status()


def test_the_recorder_loses_nothing_when_it_dies_before_committing(
    app: CoditectApp, worker_factory: WorkerFactory, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker_factory(["noop", "echo"])
    dag = Dag("three")
    dag.node("a", "noop")
    dag.node("b", "echo", after=["a"])
    run = submit(dag, app)
    assert run.wait(30) == "succeeded"

    def crash(*args: object) -> int:
        raise RuntimeError("recorder killed mid-batch")

    monkeypatch.setattr(recorder.store, "apply", crash)
    with pytest.raises(RuntimeError):
        recorder.drain()
    monkeypatch.undo()
    restarted = Recorder(recorder.client, recorder.store)
    assert restarted.drain() > 0
    recorded = restarted.store.run(run.id)
    assert recorded is not None and recorded["status"] == "succeeded"
    assert {n["status"] for n in recorded["nodes"].values()} == {"succeeded"}


def test_stalled_run_names_the_node_and_the_agent_without_workers(
    app: CoditectApp, worker_factory: WorkerFactory
) -> None:
    worker_factory(["noop"])
    dag = Dag("stalled")
    dag.node("a", "noop")
    dag.node("b", "sleep", after=["a"])
    run = submit(dag, app)
    wait_for(lambda: run.status()["nodes"]["b"]["status"] == "queued", 20, "b to be queued")
    assert run.status()["warnings"] == ["node 'b' waits for agent 'sleep', which has no live worker"]
    worker_factory(["sleep"])
    assert run.wait(30) == "succeeded"
    assert run.status()["warnings"] == []


def test_a_late_completion_of_an_old_attempt_changes_nothing(app: CoditectApp) -> None:
    engine = engine_for(app.settings.state_url)
    dag = Dag("fenced")
    dag.node("only", "noop")
    run = submit(dag, app)
    first = engine.begin(run.id, "only", "worker-a", f"{run.id}:only:1")
    engine.client.zadd(keys.LEASES, {f"{run.id}|only|1": 0})  # worker-a "died": its lease lapsed
    second = engine.begin(run.id, "only", "worker-b", f"{run.id}:only:1")  # the message, redelivered
    assert first is not None and second is not None and (first.token, second.token) == (1, 2)
    assert not engine.complete(run.id, "only", first.token, '"stale"')
    assert not engine.fail(run.id, "only", first.token, "stale failure")
    assert engine.complete(run.id, "only", second.token, '"fresh"')
    assert not engine.complete(run.id, "only", second.token, '"duplicate"')
    assert run.state() == "succeeded"
    assert run.results() == {"only": "fresh"}
    assert run.status()["nodes"]["only"]["worker"] == "worker-b"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: c\nnodes:\n- {id: a, agent: noop, after: [b]}\n- {id: b, agent: noop, after: [a]}\n",
            "dependency cycle",
        ),
        ("name: u\nnodes:\n- {id: a, agent: coder}\n", "unknown agent 'coder'"),
        ("name: m\nnodes:\n- {id: a, agent: noop, after: [zz]}\n", "missing node 'zz'"),
        ("name: m\nnodes: [\n", "not valid YAML"),
        (
            "name: " + "n" * 250 + "\nnodes:\n- {id: a, agent: noop}\n",
            "'name' must be at most 200 printable characters",
        ),
    ],
)
def test_bad_input_changes_nothing(settings: Settings, tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    client = redis.Redis.from_url(settings.require_broker())
    before = sorted(client.keys("*"))
    result = run_cli(
        ["dag", "submit", str(path), "--wait"],
        {"CODITECT_BROKER_URL": settings.require_broker(), "CODITECT_HOME": str(settings.home)},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and message in lines[0], result.stderr
    assert sorted(client.keys("*")) == before
    client.close()


def test_python_api_refuses_a_cycle_before_touching_redis(app: CoditectApp, settings: Settings) -> None:
    dag = Dag("loop")
    dag.node("a", "noop", after=["b"])
    dag.node("b", "noop", after=["a"])
    with pytest.raises(CycleError):
        submit(dag, app)
    with pytest.raises(DagError, match="unknown agent 'coder'"):
        submit(_unknown(), app)
    assert engine_for(app.settings.state_url).client.keys(keys.RUN_KEY_PREFIX + "*") == []


def _unknown() -> Dag:
    dag = Dag("unknown")
    dag.node("a", "coder")
    return dag


@pytest.mark.parametrize(
    ("agent", "error"), [("slowpoke", "timed out after 0.5 s"), ("stubborn", "hard time limit of 1 s exceeded")]
)
def test_time_limits_fail_the_node_instead_of_hanging_the_run(
    settings: Settings, worker_factory: WorkerFactory, agent: str, error: str
) -> None:
    import dataclasses

    from coditect_tasks.app import create_app

    modules = "workers.examples,tests.support.agents"
    app = create_app(dataclasses.replace(settings, agent_modules=tuple(modules.split(","))))
    worker_factory([agent, "echo"], extra_env={"CODITECT_AGENT_MODULES": modules})
    single = Dag("limits")
    single.node("slow", agent, params={"seconds": 30})
    single.node("after", "echo", after=["slow"])
    fanned = Dag("limits-foreach")
    fanned.node("each", agent, params={"seconds": 30}, foreach=[1])
    runs = [submit(single, app), submit(fanned, app)]
    assert [run.wait(20) for run in runs] == ["failed", "failed"]
    nodes = {**runs[0].status()["nodes"], **runs[1].status()["nodes"]}
    assert nodes["slow"]["error"] == error
    assert nodes["after"]["status"] == "skipped"
    assert nodes["each"]["status"] == "failed" and nodes["each"]["error"] == f"item 0: {error}"
    app.close()


def test_a_redis_that_evicts_keys_is_refused_at_submit_and_at_worker_start(
    settings: Settings, redis_server: RedisServer, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(settings.require_broker())
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        before = sorted(client.keys("*"))
        path = tmp_path / "one.yaml"
        path.write_text("name: one\nnodes:\n- {id: a, agent: noop}\n")
        env = {"CODITECT_BROKER_URL": settings.require_broker(), "CODITECT_HOME": str(settings.home)}
        for args in (["dag", "submit", str(path)], ["worker", "--agents", "noop"]):
            result = run_cli(args, env)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2, result.stderr
            assert len(lines) == 1 and "maxmemory-policy" in lines[0] and "'allkeys-lru'" in lines[0], result.stderr
        assert sorted(client.keys("*")) == before
    finally:
        client.config_set("maxmemory-policy", "noeviction")
        client.close()


def test_foreach_items_take_upstream_by_reference_and_a_too_long_list_fails_only_its_node(
    app: CoditectApp, settings: Settings, worker_factory: WorkerFactory
) -> None:
    worker_factory(["emit", "echo"], concurrency=2, extra_env={"CODITECT_MAX_FOREACH_ITEMS": "5"})
    big = "x" * 100_000
    dag = Dag("by-reference")
    dag.node("plan", "emit", params={"value": [1, 2, 3, 4]})
    dag.node("blob", "emit", params={"value": big})
    dag.node("each", "echo", foreach="plan", after=["plan", "blob"])
    pushed: list[int] = []
    monitor_client = redis.Redis.from_url(settings.require_broker())
    stop = threading.Event()

    def watch() -> None:  # every message pushed onto the echo queue, as Redis saw it
        with monitor_client.monitor() as monitor:
            for command in monitor.listen():
                text = str(command.get("command", ""))
                if text.startswith("LPUSH") and "agents.echo" in text:
                    pushed.append(len(text))  # the foreach node's message and its items'
                if stop.is_set():
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    wait_for(lambda: any(c.get("cmd") == "monitor" for c in monitor_client.client_list()), 5, "the monitor")
    run = submit(dag, app)
    assert run.wait(30) == "succeeded"
    stop.set()
    monitor_client.ping()  # one more command, so the watcher wakes and returns
    watcher.join(5)
    items = run.results()["each"]
    assert [item["params"]["item"] for item in items] == [1, 2, 3, 4]
    assert all(item["upstream"] == {"plan": [1, 2, 3, 4], "blob": big} for item in items)
    assert len(pushed) >= 5 and max(pushed) < 20_000, pushed  # no item message carries the 100 kB result

    too_long = Dag("too-long")
    too_long.node("plan", "emit", params={"value": list(range(6))})
    too_long.node("each", "echo", foreach="plan", after=["plan"])
    run = submit(too_long, app)
    assert run.wait(30) == "failed"
    assert (
        run.status()["nodes"]["each"]["error"]
        == "foreach over 6 items, over the limit of 5 (CODITECT_MAX_FOREACH_ITEMS)"
    )
    healthy = Dag("after")
    healthy.node("a", "echo")
    assert submit(healthy, app).wait(30) == "succeeded"
