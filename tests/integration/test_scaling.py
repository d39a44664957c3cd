"""What autoscaling and scale-in rely on, on real processes: the frontier counters (demand and
upcoming per agent), the worker's probe file, graceful handoff on SIGTERM, and Celery's own CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import CoditectApp
from coditect_tasks.engine.transitions import Engine, engine_for
from coditect_tasks.redis_server import stop_processes
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

from ..conftest import ROOT, SUPPORT_ENV, WorkerFactory, run_cli, wait_for
from ..support.marks import marks, to_previous_layout
from .test_observability import exporter, scrape

pytestmark = pytest.mark.integration

__all__ = ["exporter"]  # a fixture, used by name


def frontier(registry: Registry) -> dict[str, int]:
    """The non-zero counters of the frontier hash."""
    return {k: int(v) for k, v in registry.client.hgetall(keys.FRONTIER).items() if int(v)}


def _fan_in(app: CoditectApp, width: int = 8) -> Dag:
    """``up`` (sleep) feeding ``width`` echo nodes, which feed ``last`` (noop)."""
    dag = Dag("frontier")
    dag.node("up", "sleep", params={"seconds": 0})
    for k in range(width):
        dag.node(f"d{k}", "echo", after=["up"])
    dag.node("last", "noop", after=[f"d{k}" for k in range(width)])
    return dag


def _begin(engine: Engine, run_id: str, node: str, seq: int = 1) -> int:
    taken = engine.begin(run_id, node, "w1", f"{run_id}:{node}:{seq}")
    assert taken is not None, node
    return taken.token


def test_the_frontier_follows_every_transition(app: CoditectApp, registry: Registry) -> None:
    run = submit(_fan_in(app), app)
    engine = engine_for(app.settings.state_url)
    assert frontier(registry) == {"demand|sleep": 1}  # queued, nothing upcoming until it runs
    token = _begin(engine, run.id, "up")
    assert frontier(registry) == {"demand|sleep": 1, "upcoming|echo": 8}
    assert engine.retry(run.id, "up", token, "flaky", 0)  # back in the queue: not running any more
    assert frontier(registry) == {"demand|sleep": 1}
    token = _begin(engine, run.id, "up", seq=2)
    assert frontier(registry) == {"demand|sleep": 1, "upcoming|echo": 8}
    assert engine.complete(run.id, "up", token, "null")
    assert frontier(registry) == {"demand|echo": 8}
    tokens = {k: _begin(engine, run.id, f"d{k}") for k in range(8)}
    assert frontier(registry) == {"demand|echo": 8, "upcoming|noop": 1}
    for k, tok in tokens.items():
        assert engine.complete(run.id, f"d{k}", tok, "null")
    assert frontier(registry) == {"demand|noop": 1}
    assert engine.complete(run.id, "last", _begin(engine, run.id, "last"), "null")
    assert run.wait(5) == "succeeded"
    assert frontier(registry) == {}
    assert not [phase for _, _, phase in marks(registry.client, run.id).values() if phase]


@pytest.mark.parametrize("layout", ["packed", "previous release"])
def test_a_wide_node_moves_only_its_freed_successors_with_an_agent_to_upcoming(
    app: CoditectApp, registry: Registry, layout: str
) -> None:
    """A node with more than two successors counts them a thousand a command (add_each, upcoming):
    the same counts as one at a time, for successors of two agents, one that still waits on a
    node not running, and a wait, which calls no agent; a run of the previous release's layout
    (phases in their own hash) counts them one at a time."""
    dag = Dag("mixed")
    dag.node("up", "sleep", params={"seconds": 0})
    dag.node("other", "noop")
    for k in range(3):
        dag.node(f"d{k}", "echo", after=["up"])
    dag.node("e", "noop", after=["up"])
    dag.node("both", "echo", after=["up", "other"])
    dag.sleep("pause", 60, after=["up"])
    run = submit(dag, app)
    if layout != "packed":
        to_previous_layout(registry.client, run.id)
    engine = engine_for(app.settings.state_url)
    token = _begin(engine, run.id, "up")
    assert frontier(registry) == {"demand|sleep": 1, "demand|noop": 1, "upcoming|echo": 3, "upcoming|noop": 1}
    _begin(engine, run.id, "other")
    assert frontier(registry) == {"demand|sleep": 1, "demand|noop": 1, "upcoming|echo": 4, "upcoming|noop": 1}
    assert engine.retry(run.id, "up", token, "flaky", 0)
    assert frontier(registry) == {"demand|sleep": 1, "demand|noop": 1}
    token = _begin(engine, run.id, "up", seq=2)
    assert frontier(registry) == {"demand|sleep": 1, "demand|noop": 1, "upcoming|echo": 4, "upcoming|noop": 1}
    phases = {node: phase for node, (_, _, phase) in marks(registry.client, run.id).items() if phase}
    if layout != "packed":
        phases = registry.client.hgetall(keys.run_prefix(run.id) + "phase")
    assert phases == {
        "up": "demand|sleep",
        "other": "demand|noop",
        "d0": "upcoming|echo",
        "d1": "upcoming|echo",
        "d2": "upcoming|echo",
        "e": "upcoming|noop",
        "both": "upcoming|echo",
    }


def test_a_node_of_1001_successors_and_a_join_of_1001_predecessors_cross_the_thousand_a_command_reads(
    app: CoditectApp, registry: Registry
) -> None:
    """The wide begin, completion and join read and write a thousand fields a command: what lies
    past the first thousand counts the same, and the join sees every predecessor's result."""
    width = 1001
    dag = Dag("wide")
    dag.node("root", "echo")
    for k in range(width):
        dag.node(f"w{k}", "noop", after=["root"])
    dag.node("join", "echo", after=[f"w{k}" for k in range(width)])
    run = submit(dag, app)
    engine = engine_for(app.settings.state_url)
    token = _begin(engine, run.id, "root")
    assert frontier(registry) == {"demand|echo": 1, "upcoming|noop": width}
    assert engine.complete(run.id, "root", token, "null")  # and queues the rest of them in slices
    assert frontier(registry) == {"demand|noop": width}
    for k in range(width):  # each has had one message: seq 1
        assert engine.complete(run.id, f"w{k}", _begin(engine, run.id, f"w{k}"), str(k))
    taken = engine.begin(run.id, "join", "w1", f"{run.id}:join:1")
    assert taken is not None
    assert taken.upstream == {f"w{k}": k for k in range(width)}
    assert frontier(registry) == {"demand|echo": 1}


def test_the_frontier_empties_when_a_run_fails_is_cancelled_or_fans_out(app: CoditectApp, registry: Registry) -> None:
    engine = engine_for(app.settings.state_url)
    failing = submit(_fan_in(app), app)
    assert engine.fail(failing.id, "up", _begin(engine, failing.id, "up"), "boom")
    assert failing.wait(5) == "failed"
    assert frontier(registry) == {}
    cancelled = submit(_fan_in(app), app)
    _begin(engine, cancelled.id, "up")
    assert cancelled.cancel()
    assert frontier(registry) == {"demand|sleep": 1}  # its running node still runs
    assert not engine.complete(cancelled.id, "up", 99, "null")  # a stale attempt changes nothing
    assert engine.complete(cancelled.id, "up", 1, "null")
    assert frontier(registry) == {}
    fan = Dag("fan")
    fan.node("p", "echo", foreach=[1, 2, 3])
    fan.node("after", "noop", after=["p"])
    run = submit(fan, app)
    taken = engine.begin(run.id, "p", "w1", f"{run.id}:p:1")
    assert taken is not None and engine.fan_out(run.id, "p", taken.token, taken.record, [1, 2, 3])
    assert frontier(registry) == {"demand|echo": 3, "upcoming|noop": 1}  # the items, not their node
    for k in range(3):
        assert engine.complete(run.id, f"p#{k}", _begin(engine, run.id, f"p#{k}"), str(k))
    assert frontier(registry) == {"demand|noop": 1}


def test_a_run_retired_while_its_node_still_runs_leaves_no_demand(app: CoditectApp, registry: Registry) -> None:
    engine = engine_for(app.settings.state_url)
    run = submit(_fan_in(app), app)
    token = _begin(engine, run.id, "up")
    assert run.cancel() and engine.retire(run.id, 0)  # recorded at once, with no retention window
    assert frontier(registry) == {}
    # the node still runs, so its run's state stays until it ends (to free what it holds) ...
    assert engine.complete(run.id, "up", token, "null")
    assert frontier(registry) == {}  # ... and its end leaves no demand behind
    assert registry.client.zscore(keys.RETIRED, run.id) is not None  # the sweep deletes it next


def test_the_exporter_shows_upcoming_work_before_it_is_queued(
    app: CoditectApp, worker_factory: WorkerFactory, exporter: int
) -> None:
    worker_factory(["sleep"])
    dag = _fan_in(app)
    dag.nodes["up"].params["seconds"] = 2.0
    run = submit(dag, app)

    def gauge(name: str, agent: str) -> float:
        return scrape(exporter)[name].get((("agent", agent),), 0.0)

    wait_for(lambda: gauge("coditect_agent_upcoming", "echo") == 8, 10, "8 echo nodes upcoming")
    assert gauge("coditect_agent_demand", "echo") == 0
    assert gauge("coditect_agent_demand", "sleep") == 1
    assert registry_status(run.status(), "up") == "running"
    wait_for(lambda: gauge("coditect_agent_demand", "echo") == 8, 10, "8 echo nodes in demand")
    assert gauge("coditect_agent_upcoming", "echo") == 0
    worker_factory(["echo", "noop"])
    assert run.wait(30) == "succeeded"
    assert gauge("coditect_agent_demand", "echo") == gauge("coditect_agent_upcoming", "noop") == 0


def registry_status(doc: dict[str, object], node: str) -> object:
    nodes = doc["nodes"]
    assert isinstance(nodes, dict)
    return nodes[node]["status"]


@pytest.mark.parametrize("followed", [False, True], ids=["own-message", "followed"])
def test_a_worker_told_to_stop_hands_its_node_to_another_pool(
    app: CoditectApp, worker_factory: WorkerFactory, tmp_path: Path, followed: bool
) -> None:
    probe = tmp_path / "health.json"
    leaving = worker_factory(["sleep"], extra_env={"CODITECT_SHUTDOWN_GRACE": "1", "CODITECT_HEALTH_FILE": str(probe)})
    env = {**app.settings.environment(), "CODITECT_HEALTH_FILE": str(probe)}
    wait_for(lambda: run_cli(["health", "--ready"], env).returncode == 0, 10, "the probe file to say ready")
    dag = Dag("long")
    if followed:  # the process finishes quick, then takes long's message itself
        dag.node("quick", "sleep", params={"seconds": 0})
    dag.node("long", "sleep", params={"seconds": 6.0})
    run = submit(dag, app)
    wait_for(lambda: run.status()["nodes"]["long"]["status"] == "running", 20, "the node to start")
    stats = app.control.inspect(destination=[leaving.hostname], timeout=5).stats() or {}
    assert stats[leaving.hostname]["total"] == {keys.agent_queue("sleep"): 1}  # one message ran both
    staying = worker_factory(["sleep"])
    stopped_at = time.monotonic()
    os.kill(leaving.pid, signal.SIGTERM)
    wait_for(lambda: run_cli(["health", "--ready"], env).returncode == 1, 5, "the leaving worker to be unready")
    assert run_cli(["health"], env).returncode == 0  # still alive while it drains
    wait_for(lambda: run.status()["nodes"]["long"].get("worker") == staying.hostname, 15, "the node on the other pool")
    handoff = time.monotonic() - stopped_at
    print(f"handoff from SIGTERM to running on another pool: {handoff:.1f} s")
    history = engine_for(app.settings.state_url).client.xrange(keys.HISTORY)
    requeued = [f["error"] for _, f in history if f["run"] == run.id and f["status"] == "requeued"]
    assert [why.split(":")[0] for why in requeued] == ["handed off"]  # by the leaving worker, not a lease expiry
    assert handoff < 1 + 8  # the grace plus seconds (1 to 2 on an idle machine, 5 under the whole suite)
    assert leaving.proc is not None and leaving.proc.wait(10) == 0  # it exits once the node is handed off
    assert run.wait(30) == "succeeded"
    assert run.status()["nodes"]["long"]["attempts"] == 2


def test_the_cold_shutdown_after_the_grace_stops_a_call_that_holds_sigterm(
    app: CoditectApp, worker_factory: WorkerFactory
) -> None:
    """A call holds SIGTERM in its pool process only until the cold shutdown: past the grace the
    worker stops it and exits, rather than waiting for it (a 30 s call, a 1 s grace)."""
    leaving = worker_factory(["sleep"], extra_env={"CODITECT_SHUTDOWN_GRACE": "1"})
    dag = Dag("long")
    dag.node("long", "sleep", params={"seconds": 30.0})
    run = submit(dag, app)
    wait_for(lambda: run.status()["nodes"]["long"]["status"] == "running", 20, "the node to start")
    stopped_at = time.monotonic()
    os.kill(leaving.pid, signal.SIGTERM)
    assert leaving.proc is not None and leaving.proc.wait(20) == 0
    exited = time.monotonic() - stopped_at
    print(f"a worker told to stop, its call 30 s long and its grace 1 s, exited {exited:.1f} s later")
    assert exited < 15, "its cold shutdown waited for the call"
    assert run.status()["nodes"]["long"]["status"] == "queued"  # handed off: another pool would take it
    run.cancel()


def test_sigterm_to_the_whole_process_group_lets_the_running_node_finish_there_once(
    test_app: CoditectApp, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    """systemd's KillMode=control-group, Ctrl-C's kill of a group: the pool processes get SIGTERM too."""
    worker = worker_factory(["counted"], concurrency=2, extra_env={**SUPPORT_ENV, "CODITECT_SHUTDOWN_GRACE": "2"})
    log = tmp_path / "executions.log"
    dag = Dag("group")
    dag.node("slow", "counted", params={"log": str(log), "seconds": 3})
    run = submit(dag, test_app)
    wait_for(log.exists, 20, "the node to start")
    began = time.monotonic()
    time.sleep(1.5)  # the point under test: the signal lands 1.5 s before the node's end
    os.killpg(os.getpgid(worker.pid), signal.SIGTERM)
    assert worker.proc is not None and worker.proc.wait(15) == 0
    print(f"the worker exited {time.monotonic() - began:.1f} s after its node began (3 s node, SIGTERM at 1.5 s)")
    assert run.wait(10) == "succeeded"
    node = run.status()["nodes"]["slow"]
    assert (node["worker"], node["attempts"]) == (worker.hostname, 1)
    assert log.read_text().splitlines() == ["- 1"]  # ran once, on that worker


def test_celery_own_cli_finds_the_app(settings: Settings, worker_factory: WorkerFactory) -> None:
    worker = worker_factory(["echo"])
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "coditect_tasks", "inspect", "ping", "-d", worker.hostname],
        env={**os.environ, **settings.environment(), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pong" in proc.stdout and worker.hostname in proc.stdout


def test_the_recorder_and_the_scheduler_answer_the_images_healthcheck_too(settings: Settings, tmp_path: Path) -> None:
    """The image's one HEALTHCHECK (``coditect-tasks health``) holds for every role, not only workers."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for role in ("recorder", "scheduler"):
            probe = tmp_path / f"{role}.json"
            env = {**settings.environment(), "CODITECT_HEALTH_FILE": str(probe)}
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "coditect_tasks", role],
                    env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            wait_for(lambda e=env: run_cli(["health", "--ready"], e).returncode == 0, 30, f"the {role}'s probe")
            assert json.loads(probe.read_text())["hostname"].startswith(f"{role}@")
    finally:
        stop_processes(procs, timeout=10)


def test_the_probe_says_what_is_wrong(tmp_path: Path) -> None:
    env = {"CODITECT_HEALTH_FILE": str(tmp_path / "none.json")}
    result = run_cli(["health"], env)
    assert result.returncode == 1 and "no heartbeat file" in result.stderr
    unset = run_cli(["health"], {})
    assert unset.returncode != 0 and "CODITECT_HEALTH_FILE: not set" in unset.stderr
    future = tmp_path / "future.json"
    future.write_text('{"hostname": "w", "beat": 1e300, "ready": true}')
    result = run_cli(["health"], {"CODITECT_HEALTH_FILE": str(future)})
    assert result.returncode == 1 and "not within" in result.stderr


def test_celery_own_cli_reports_a_bad_setting_in_one_line(settings: Settings) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "coditect_tasks", "inspect", "ping"],
        env={**os.environ, **settings.environment(), "PYTHONPATH": str(ROOT), "CODITECT_SHUTDOWN_GRACE": "soon"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "coditect-tasks: error: CODITECT_SHUTDOWN_GRACE: 'soon' is not a whole number ≥ 0"
