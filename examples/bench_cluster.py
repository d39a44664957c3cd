"""Run state on one Redis against a Redis Cluster's cells, the same worker processes on both: a
burst of diamond runs (4 nodes each) on a single state Redis with a replica and on a cluster of
three primaries with a replica each (16 cells), the broker a Redis of its own in both (so both go
through the outbox); alternated ``--repeats`` times, medians.

Reported per deployment: the burst's capacity (nodes a second, submit to last run's end), the
state Redis CPU per node (summed over the primaries), and on the cluster each primary's share of
the runs' keys and of that CPU.

    python examples/bench_cluster.py [--runs 1000] [--repeats 3] [--replicas 0|1] [--cells 16] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis

from coditect_tasks.client import Client
from coditect_tasks.embedded import LocalStack
from coditect_tasks.load.scenario import default_dag
from coditect_tasks.redis_cluster import ClusterGroup
from coditect_tasks.redis_server import RedisServer
from coditect_tasks.settings import Settings

NODES_PER_RUN = len(default_dag().nodes)


@contextlib.contextmanager
def deployment(kind: str, folder: Path, replicas: int, cells: int) -> Iterator[tuple[Settings, list[redis.Redis]]]:
    """Settings on a running deployment of ``kind`` (each primary with a replica), and a plain
    client of each state primary; durable writes wait for ``replicas`` replicas."""
    broker = RedisServer(folder / "broker").start()
    try:
        if kind == "single":
            primary = RedisServer(folder / "state")
            replica = RedisServer(folder / "replica", config=(f"replicaof 127.0.0.1 {primary.port}",))
            try:
                primary.start()
                replica.start()
                settings = Settings(
                    broker_url=broker.url, redis_url=primary.url, log_level="WARNING", redis_min_replicas=replicas
                )
                yield settings, [redis.Redis.from_url(primary.url, decode_responses=True)]
            finally:
                replica.stop()
                primary.stop()
            return
        cluster = ClusterGroup(folder / "cluster").start()
        try:
            settings = Settings(
                broker_url=broker.url,
                redis_url=cluster.url,
                log_level="WARNING",
                redis_min_replicas=replicas,
                redis_cells=cells,
            )
            primaries = {cluster.primary_of(f"{{s{slot}}}").port for slot in range(64)}
            yield settings, [cluster.client(s) for s in cluster.servers if s.port in primaries]
        finally:
            cluster.stop()
    finally:
        broker.stop()


def cpu(node: redis.Redis) -> float:
    info = node.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def burst(settings: Settings, primaries: list[redis.Redis], runs: int) -> dict[str, Any]:
    """Submit ``runs`` diamonds from 4 threads, wait for all; the figures of that burst."""
    before = [cpu(node) for node in primaries]
    with Client(settings) as client, ThreadPoolExecutor(4) as pool:
        started = time.perf_counter()
        submitted = list(pool.map(lambda i: client.submit(default_dag()), range(runs)))
        states = list(pool.map(lambda run: run.wait(timeout=600), submitted))
        elapsed = time.perf_counter() - started
    if states != ["succeeded"] * runs:
        raise RuntimeError(f"{runs - states.count('succeeded')} run(s) did not succeed")
    used = [cpu(node) - was for node, was in zip(primaries, before, strict=True)]
    keys = [sum(1 for _ in node.scan_iter(match="coditect:*:run:*", count=1000)) for node in primaries]
    nodes = runs * NODES_PER_RUN
    return {
        "nodes_per_second": nodes / elapsed,
        "redis_cpu_us_per_node": sum(used) / nodes * 1e6,
        "cpu_share": [u / sum(used) for u in used],
        "key_share": [k / sum(keys) for k in keys],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=0, help="CODITECT_REDIS_MIN_REPLICAS")
    parser.add_argument("--cells", type=int, default=16, help="CODITECT_REDIS_CELLS on the cluster")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures: dict[str, list[dict[str, Any]]] = {"single": [], "cluster": []}
    with tempfile.TemporaryDirectory(prefix="coditect-bench-cluster-") as folder:
        for repeat in range(args.repeats):
            for kind in figures:
                where = Path(folder) / f"{kind}-{repeat}"
                with deployment(kind, where, args.replicas, args.cells) as (settings, primaries):
                    settings = dataclasses.replace(settings, home=where / "home")
                    with LocalStack.temporary(
                        settings, ["noop", "echo"], "bench-cluster", workers=2, concurrency=4
                    ) as stack:
                        stack.start()
                        figures[kind].append(burst(settings, primaries, args.runs))
                    for node in primaries:
                        node.close()
    report = {kind: _medians(rows) for kind, rows in figures.items()}
    report["cluster_vs_single"] = {
        "capacity": round(report["cluster"]["nodes_per_second"] / report["single"]["nodes_per_second"], 2),
        "redis_cpu_per_node": round(
            report["cluster"]["redis_cpu_us_per_node"] / report["single"]["redis_cpu_us_per_node"], 2
        ),
    }
    print(json.dumps(report, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


def _medians(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in rows[0]:
        if isinstance(rows[0][name], list):
            out[name] = [round(statistics.median(r[name][i] for r in rows), 3) for i in range(len(rows[0][name]))]
        else:
            out[name] = round(statistics.median(r[name] for r in rows), 1)
    return out


if __name__ == "__main__":
    main()
