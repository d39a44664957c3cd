"""What a node costs Redis, against plain Celery doing the same work on the same Redis: memory while
queued and after a run retires, Redis CPU per node, and the fan-out edge against the fan-out's width.

These are the figures that size a deployment's Redis (a backlog of a million queued runs, a retention
window of finished ones, the nodes a second one core serves), so ``bench`` reports them beside speed.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from celery import group

from . import keys
from .app import CoditectApp, create_app
from .bench import fanout
from .client import submit
from .connection import redis_client
from .dag.spec import Dag
from .redis_server import RedisServer
from .settings import Settings

#: A run id in a key's name, for grouping keys by kind.
_RUN_ID = re.compile(r"[0-9a-f]{32}(?:[0-9a-f]{2})?")


def single() -> Dag:
    dag = Dag("single")
    dag.node("only", "noop")
    return dag


def wide(n: int) -> Dag:
    """A root fanned out to ``n`` nodes that join into one: its first edge is the fan-out edge."""
    dag = Dag(f"wide-{n}")
    dag.node("root", "echo")
    for i in range(n):
        dag.node(f"w{i}", "noop", after=["root"])
    dag.node("join", "echo", after=[f"w{i}" for i in range(n)])
    return dag


def _at(node: dict[str, Any], field: str) -> datetime:
    return datetime.fromisoformat(node[field])


def wide_edges_ms(doc: dict[str, Any]) -> tuple[float, float]:
    """(fan-out edge, fan-in edge) of a finished ``wide`` run's document, in milliseconds: the root's
    end to the first of the wide layer's starts, and the last of the layer's ends to the join's start."""
    nodes = doc["nodes"]
    layer = [node for nid, node in nodes.items() if nid.startswith("w")]
    out = min(_at(n, "started_at") for n in layer) - _at(nodes["root"], "finished_at")
    into = _at(nodes["join"], "started_at") - max(_at(n, "finished_at") for n in layer)
    return out.total_seconds() * 1000, into.total_seconds() * 1000


def key_kind(key: str) -> str:
    """A key's name with its run id and Celery task id left out: the keys of one kind group together."""
    if key.startswith("celery-task-meta-"):
        return "celery-task-meta-<id>"
    return _RUN_ID.sub("<run>", key)


def bytes_by_kind(client: Any, match: str = "*") -> dict[str, dict[str, int]]:
    """Kind of key → how many keys of it and their bytes (``MEMORY USAGE``, every element counted)."""
    kinds: dict[str, dict[str, int]] = defaultdict(lambda: {"keys": 0, "bytes": 0})
    for key in client.scan_iter(match=match, count=1000):
        kind = kinds[key_kind(key if isinstance(key, str) else key.decode())]
        kind["keys"] += 1
        kind["bytes"] += int(client.memory_usage(key, samples=0) or 0)
    return dict(sorted(kinds.items(), key=lambda item: -item[1]["bytes"]))


def queued_memory(settings: Settings, nodes: int = 10_000, runs: int = 1_000) -> dict[str, Any]:
    """Redis memory per queued node, on a private Redis no worker drains: a fan-out of ``nodes``
    against a Celery group of as many tasks with results, and ``runs`` single-node runs against as
    many single tasks. Ours counts the history entries that wait in Redis for the recorder."""
    with (
        tempfile.TemporaryDirectory(prefix="coditect-bench-") as folder,
        RedisServer(Path(folder), appendonly=False) as server,
    ):
        app = create_app(settings.with_broker(server.url))
        client = redis_client(server.url)
        try:
            noop = app.tasks["agents.noop"]

            def grown(act: Callable[[], object]) -> int:
                before = int(client.info("memory")["used_memory"])
                act()
                return int(client.info("memory")["used_memory"]) - before

            celery_fan = grown(lambda: group(noop.si() for _ in range(nodes)).apply_async())
            ours_fan = grown(lambda: submit(fanout(nodes), app))
            client.flushall()
            celery_single = grown(lambda: [noop.si().apply_async() for _ in range(runs)])
            ours_single = grown(lambda: [submit(single(), app) for _ in range(runs)])
            kinds = bytes_by_kind(client, f"{keys.PREFIX}*")
        finally:
            client.close()
            app.close()
    return {
        "nodes": nodes,
        "celery_bytes_per_1000": round(celery_fan * 1000 / nodes),
        "coditect_bytes_per_1000": round(ours_fan * 1000 / nodes),
        "ratio": round(ours_fan / celery_fan, 2),
        "single_runs": runs,
        "celery_bytes_per_single": round(celery_single / runs),
        "coditect_bytes_per_single": round(ours_single / runs),
        "single_ratio": round(ours_single / celery_single, 2),
        "single_bytes_by_kind": {kind: round(v["bytes"] / runs) for kind, v in kinds.items()},
    }


def retired_bytes(app: CoditectApp, dag: Dag, retention: float = 600, timeout: float = 120) -> dict[str, Any]:
    """Run ``dag`` to its end and retire it as the recorder does: what its live state holds for the
    retention window (bytes and keys; the shared structures' share is not counted)."""
    from .engine.transitions import engine_for

    run = submit(dag, app)
    if run.wait(timeout) != "succeeded":
        raise RuntimeError(f"benchmark run {run.id} did not succeed")
    engine = engine_for(app.settings.state_url)
    if not engine.retire(run.id, retention):
        raise RuntimeError(f"benchmark run {run.id} could not be retired")
    client: Any = engine.client
    prefix = keys.run_prefix(run.id)
    found = client.keys(prefix + "*")
    sizes = {str(key).removeprefix(prefix): int(client.memory_usage(key, samples=0) or 0) for key in found}
    return {"keys": len(sizes), "bytes": sum(sizes.values()), "by_kind": sizes}


def redis_cpu(client: Any) -> float:
    """Seconds of CPU the Redis server has used (user + system): its cost, whatever the machine's noise."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def cpu_per_node(app: CoditectApp, client: Any, nodes: int, timeout: float) -> tuple[float, float]:
    """Redis CPU (µs) per task of a Celery group of ``nodes`` noop tasks with results (its worker's
    result writes, the caller's polling and ``forget`` included), and per node of a fan-out of as
    many, on the same workers and Redis, its history recorded and the run retired included."""
    from .history.recorder import Recorder
    from .history.store import HistoryStore

    recorder = Recorder(client, HistoryStore.from_settings(app.settings), retention=app.settings.live_retention)
    while recorder.drain():  # what came before is not this run's cost
        pass
    noop = app.tasks["agents.noop"]
    before = redis_cpu(client)
    result = group(noop.si() for _ in range(nodes)).apply_async()
    result.get(timeout=timeout, disable_sync_subtasks=False)
    result.forget()
    middle = redis_cpu(client)
    run = submit(fanout(nodes), app)
    if run.wait(timeout) != "succeeded":
        raise RuntimeError(f"benchmark run {run.id} did not succeed")
    while recorder.drain():  # what a deployment's recorder does for the run, on the same Redis
        pass
    if client.zscore(keys.in_cell(keys.UNRECORDED, keys.cell_of(run.id)), run.id) is not None:
        raise RuntimeError(f"benchmark run {run.id} was not recorded")
    _reap_sent(client, keys.cell_of(run.id), keys.agent_queue("noop"), timeout)
    return (middle - before) / nodes * 1e6, (redis_cpu(client) - middle) / nodes * 1e6


def _reap_sent(client: Any, cell: int, queue: str, timeout: float) -> None:
    """Let the workers' reaper check the messages a run's nodes were sent on ``queue`` (due
    ``QUEUED_CHECK_SECONDS`` after the first: brought forward), a part of what each node costs."""
    client.zadd(keys.in_cell(keys.WATCHED, cell), {queue: 0}, xx=True)
    deadline = time.monotonic() + timeout
    while client.exists(keys.in_cell(keys.SENT_PREFIX, cell) + queue):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the reaper did not check the benchmark's messages on {queue}")
        time.sleep(0.05)


#: Runs per width and repetition: one run gives one fan-out edge, a figure a busy moment moves.
EDGE_RUNS = 5


def fanout_edge_ms(app: CoditectApp, width: int, timeout: float) -> float:
    """The fan-out edge of one ``wide(width)`` run, in milliseconds."""
    run = submit(wide(width), app)
    if run.wait(timeout) != "succeeded":
        raise RuntimeError(f"benchmark run {run.id} did not succeed")
    return wide_edges_ms(run.status())[0]


def run_footprint_bench(
    app: CoditectApp,
    repeats: int = 3,
    nodes: int = 5_000,
    widths: tuple[int, int] = (10, 1_000),
    timeout: float = 300,
    on_step: Callable[[str], None] = lambda step: None,
) -> dict[str, Any]:
    """Every footprint figure, medians of ``repeats`` where the machine's noise moves them."""
    from .load.scenario import default_dag

    client = redis_client(app.settings.state_url)
    try:
        on_step("warm-up")
        fanout_edge_ms(app, 10, timeout)
        celery_cpu, ours_cpu = [], []
        edges: dict[int, list[float]] = {width: [] for width in widths}
        for rep in range(repeats):
            on_step(f"repetition {rep + 1}/{repeats}: Redis CPU of a fan-out of {nodes:,}")
            plain, ours = cpu_per_node(app, client, nodes, timeout)
            celery_cpu.append(plain)
            ours_cpu.append(ours)
            for width in widths:
                on_step(f"repetition {rep + 1}/{repeats}: fan-out edge, {width:,} wide")
                edges[width].extend(fanout_edge_ms(app, width, timeout) for _ in range(EDGE_RUNS))
        on_step("a retired diamond run")
        retired = retired_bytes(app, default_dag())
    finally:
        client.close()
    on_step("memory of queued nodes (a private Redis)")
    med = statistics.median
    narrow, broad = (med(edges[w]) for w in widths)
    return {
        "repeats": repeats,
        "cpu": {
            "nodes": nodes,
            "celery_us_per_node": round(med(celery_cpu), 1),
            "coditect_us_per_node": round(med(ours_cpu), 1),
            "ratio": round(med(ours_cpu) / med(celery_cpu), 3),
        },
        "fanout_edge": {
            "widths": list(widths),
            "p50_ms": [round(narrow, 2), round(broad, 2)],
            "ratio": round(broad / max(narrow, 0.01), 2),
        },
        "retired_diamond": retired,
        "queued": queued_memory(app.settings),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
