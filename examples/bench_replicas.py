"""The cost of ``CODITECT_REDIS_MIN_REPLICAS`` on a real Sentinel-watched Redis (a primary, two
replicas and three Sentinels on loopback) or a real Redis Cluster (three primaries with two
replicas each, the broker a Redis of its own), one local pool of 2 processes: submit latency and
the time per node of a chain (each node's start and end wait for a replica), with 0 and with 1
replica required, alternated ``--repeats`` times; medians.

    python examples/bench_replicas.py [--on sentinel|cluster] [--repeats 3] [--json]
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
from pathlib import Path
from typing import Any

from coditect_tasks import Dag
from coditect_tasks.app import create_app
from coditect_tasks.bench import dag_seconds
from coditect_tasks.client import Client
from coditect_tasks.embedded import LocalStack
from coditect_tasks.redis_cluster import ClusterGroup
from coditect_tasks.redis_server import RedisServer, SentinelGroup
from coditect_tasks.settings import Settings

SUBMITS = 200
CHAIN = 50


def submit_latency(client: Client) -> tuple[float, float]:
    """p50 and p99 in ms of submitting a one-node run (no worker takes it: only the submit counts)."""
    dag = Dag("one")
    dag.wait("w", "bench.never", key="k")
    seconds = []
    for _ in range(SUBMITS):
        started = time.perf_counter()
        run = client.submit(dag)
        seconds.append(time.perf_counter() - started)
        run.cancel()
    seconds.sort()
    return statistics.median(seconds) * 1000, seconds[int(len(seconds) * 0.99)] * 1000


def chain_ms_per_node(settings: Settings) -> float:
    dag = Dag("chain")
    for i in range(CHAIN):
        dag.node(f"n{i}", "noop", after=[f"n{i - 1}"] if i else [])
    app = create_app(settings)
    try:
        return dag_seconds(app, dag, 120)[0] / CHAIN * 1000
    finally:
        app.close()


@contextlib.contextmanager
def deployment(kind: str, folder: Path) -> Iterator[Settings]:
    """Settings on a running deployment of ``kind``, stopped on exit."""
    if kind == "sentinel":
        group = SentinelGroup(folder / "redis").start()
        try:
            yield Settings(broker_url=group.url, log_level="WARNING")
        finally:
            group.stop()
        return
    cluster = ClusterGroup(folder / "cluster", replicas=2).start()
    broker = RedisServer(folder / "broker").start()
    try:
        yield Settings(broker_url=broker.url, redis_url=cluster.url, log_level="WARNING")
    finally:
        broker.stop()
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--on", choices=("sentinel", "cluster"), default="sentinel")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures: dict[int, dict[str, list[float]]] = {0: {}, 1: {}}
    with (
        tempfile.TemporaryDirectory(prefix="coditect-bench-replicas-") as folder,
        deployment(args.on, Path(folder)) as on,
    ):
        for _ in range(args.repeats):
            for replicas in (0, 1):
                settings = dataclasses.replace(on, home=Path(folder) / f"home-{replicas}", redis_min_replicas=replicas)
                with LocalStack.temporary(settings, ["noop"], "bench-replicas", workers=1, concurrency=2) as stack:
                    stack.start()
                    client = Client(settings)
                    p50, p99 = submit_latency(client)
                    client.close()
                    row = figures[replicas]
                    row.setdefault("submit_p50_ms", []).append(p50)
                    row.setdefault("submit_p99_ms", []).append(p99)
                    row.setdefault("chain_ms_per_node", []).append(chain_ms_per_node(settings))
    report: dict[str, Any] = {
        f"min_replicas_{n}": {k: round(statistics.median(v), 2) for k, v in row.items()} for n, row in figures.items()
    }
    print(json.dumps(report, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
