"""Limits across real worker processes: a keyed concurrency limit across two pools, a weighted rate
limit in every window, and the slots of a SIGKILLed pool freed when its leases lapse. The history
stream's times are the evidence: when each node was queued (dispatched), began and ended."""

from __future__ import annotations

import random
import time
from pathlib import Path

from coditect_tasks import Dag, submit
from coditect_tasks.app import CoditectApp
from coditect_tasks.bench import max_overlap, timeline
from coditect_tasks.engine.transitions import engine_for
from coditect_tasks.keys import LEASE_SECONDS
from coditect_tasks.limits import Limit
from coditect_tasks.registry import Registry

from ..conftest import SUPPORT_ENV, WorkerFactory, wait_for


def test_a_keyed_limit_holds_across_two_pools_and_uses_its_whole_count(
    test_app: CoditectApp, worker_factory: WorkerFactory, registry: Registry
) -> None:
    for _ in range(2):  # six slots: room for two of each repo at once, across both pools
        worker_factory(["pinned"], concurrency=3, extra_env=SUPPORT_ENV)
    dag = Dag("repos")
    for repo in ("a", "b", "c"):
        for i in range(10):
            dag.node(f"{repo}{i}", "pinned", params={"repo": repo, "seconds": 0.2})
    run = submit(dag, test_app)  # pinned's own limit: repo-slots, 2 at once per repo
    assert run.wait(timeout=60) == "succeeded"
    history = timeline(run)
    for repo in ("a", "b", "c"):
        spans = []
        for node, entries in history.items():
            if node.startswith(repo):
                times = dict(entries)
                spans.append((times["running"], times["succeeded"]))
        overlap = max_overlap(spans)
        print(f"repo {repo}: at most {overlap} nodes at once")
        assert overlap == 2  # never more than the limit, and the limit's whole count used


def test_a_weighted_rate_limit_holds_in_every_window(
    test_app: CoditectApp, worker_factory: WorkerFactory, registry: Registry
) -> None:
    engine = engine_for(test_app.settings.state_url)
    engine.declare_limit("tokens", Limit("tokens", rate=20, per=2.0, units="tokens").to_json())
    worker_factory(["echo"], concurrency=1, extra_env=SUPPORT_ENV)
    rng = random.Random(3)
    units = {f"n{i}": rng.randint(1, 5) for i in range(14)}
    dag = Dag("rated")
    for node, tokens in units.items():
        dag.node(node, "echo", params={"tokens": tokens}, limits=["tokens"])
    started = time.monotonic()
    run = submit(dag, test_app)
    assert run.wait(timeout=60) == "succeeded"
    seconds = time.monotonic() - started
    dispatched = {node: max(t for s, t in entries if s == "queued") for node, entries in timeline(run).items()}
    worst = 0
    for at in dispatched.values():
        # the engine judges on the Redis server's clock, the history on the caller's: 20 ms apart at most
        window = sum(units[n] for n, t in dispatched.items() if at <= t < at + 2.0 - 0.02)
        worst = max(worst, window)
    total = sum(units.values())
    print(f"{total} units in {seconds:.1f} s; at most {worst} units in one 2 s window")
    assert worst <= 20
    assert seconds >= (total - 20) / 10 - 0.1  # the windows after the first cannot start more than 20 units


def test_a_killed_pools_slots_are_freed_when_its_leases_lapse(
    test_app: CoditectApp, worker_factory: WorkerFactory, registry: Registry, tmp_path: Path
) -> None:
    engine = engine_for(test_app.settings.state_url)
    engine.declare_limit("repo", Limit("repo", concurrency=2, key="repo").to_json())
    doomed = worker_factory(["counted"], concurrency=2, extra_env=SUPPORT_ENV)
    log = tmp_path / "executions.log"
    dag = Dag("kill")
    for i in range(4):
        # the first two hold the slots until their pool is killed; run again, and the waiters, they are quick
        first = {"first_seconds": 25} if i < 2 else {}
        params = {"repo": "r", "log": str(log), "seconds": 0.5, "item": f"n{i}", **first}
        dag.node(f"n{i}", "counted", params=params, limits=["repo"])
    run = submit(dag, test_app)
    wait_for(
        lambda: log.exists() and len(log.read_text().splitlines()) == 2, 20, "two nodes running on the doomed pool"
    )
    waiting = {n for n, node in run.status()["nodes"].items() if "throttled" in node}
    assert len(waiting) == 2
    worker_factory(["counted"], concurrency=2, extra_env=SUPPORT_ENV)
    doomed.kill(group=True)
    killed = time.monotonic()
    seconds = wait_for(
        lambda: any(run.status()["nodes"][n]["status"] in ("running", "succeeded") for n in waiting),
        20,
        "a waiter to begin",
    )
    print(f"a waiter began {seconds:.1f} s after its holders' pool was killed (lease {LEASE_SECONDS:g} s)")
    assert seconds <= LEASE_SECONDS + 2
    assert run.wait(timeout=60) == "succeeded"
    assert time.monotonic() - killed < 30
    succeeded = [s for entries in timeline(run).values() for s, _ in entries if s == "succeeded"]
    assert len(succeeded) == 4  # each node's effect once: none lost, none twice
    assert engine.limits("repo")[0]["keys"] == []  # nothing held or waiting afterwards
