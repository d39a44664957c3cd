"""How submit time and Redis memory grow with a DAG's size: 100 to 100,000 nodes, on a private
Redis that no worker drains (so every node stays in flight), for two shapes: a fan-out (every
node a root: one queued message each) and layers of 10 (each layer waits on the one before).

    python examples/bench_curve.py [NODES ...]      # default: 100 1000 10000 100000

Prints one line per shape and size: submit seconds (validate, plan, the atomic write and the
slices of roots after it), Redis memory in all and per node, and the longest single command or
script Redis ran meanwhile (its SLOWLOG, from 10 ms): how long any other client could have
waited. Linear growth shows as a flat per-node column.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import redis

from coditect_tasks.app import create_app
from coditect_tasks.bench import fanout
from coditect_tasks.client import submit
from coditect_tasks.connection import redis_client
from coditect_tasks.dag.spec import Dag
from coditect_tasks.redis_server import RedisServer
from coditect_tasks.settings import Settings


def layered(n: int, width: int = 10) -> Dag:
    dag = Dag(f"layers-{n}")
    for i in range(n):
        layer = i // width
        after = [f"n{(layer - 1) * width + j}" for j in range(width)] if layer else []
        dag.node(f"n{i}", "noop", after=after)
    return dag


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1_000, 10_000, 100_000]
    settings = dataclasses.replace(Settings.from_env(), max_nodes=max(sizes))
    heads = ("nodes", "submit s", "µs/node", "Redis MB", "bytes/node", "longest ms")
    print(f"{'shape':8} " + " ".join(f"{h:>{max(8, len(h))}}" for h in heads))
    for shape, build in (("fan-out", fanout), ("layers", layered)):
        for n in sizes:
            dag = build(n)
            with tempfile.TemporaryDirectory(prefix="coditect-curve-") as folder:
                server = RedisServer(Path(folder), appendonly=False).start()
                app = create_app(settings.with_broker(server.url))
                client = redis_client(server.url)
                try:
                    client.config_set("slowlog-log-slower-than", 10_000)  # µs
                    client.config_set("slowlog-max-len", 10_000)
                    client.slowlog_reset()
                    before = int(client.info("memory")["used_memory"])
                    started = time.perf_counter()
                    submit(dag, app)
                    seconds = time.perf_counter() - started
                    used = int(client.info("memory")["used_memory"]) - before
                    longest = max((e["duration"] for e in client.slowlog_get(10_000)), default=0) / 1000
                except redis.RedisError as exc:  # e.g. BUSY: one script ran past Redis's busy limit
                    print(f"{shape:8} {n:8,} failed after {time.perf_counter() - started:.1f} s: {exc}")
                    continue
                finally:
                    client.close()
                    app.close()
                    server.stop()
            row = f"{shape:8} {n:8,} {seconds:9.3f} {seconds / n * 1e6:8.1f} {used / 1e6:9.1f} {used / n:10.0f}"
            print(f"{row} {longest:10.0f}")


if __name__ == "__main__":
    main()
