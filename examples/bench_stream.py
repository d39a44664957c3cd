"""Issue 35's figures for streamed output, on real processes (a Redis, one worker pool of the
example ``talk`` agent, a client following the node): the latency from a chunk's append in Redis
(its entry id is Redis's clock, on this same machine) to the client holding it, p50 and p99, and
the Redis bytes a chunk costs in the run's output stream (``MEMORY USAGE``); medians of ``--repeats``.

    python examples/bench_stream.py [--words 2000] [--delay 0.002] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from coditect_tasks import Client, Dag, keys
from coditect_tasks.embedded import WorkerProcess
from coditect_tasks.redis_server import RedisServer
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings


def one_round(settings: Settings, words: int, delay: float) -> dict[str, float]:
    dag = Dag("talk")
    dag.node("t", "talk", params={"text": " ".join(f"w{i}" for i in range(words)), "delay": delay})
    lags = []
    with Client(settings) as client:
        run = client.submit(dag)
        for chunk in run.stream("t"):
            arrived = time.time() * 1000
            lags.append(arrived - int(chunk.id.split("-")[0]))
        assert run.wait(timeout=60) == "succeeded"
        output = keys.run_prefix(run.id) + "output"
        used = int(client.redis.memory_usage(output, samples=0) or 0)
        entries = int(client.redis.xlen(output))
    lags.sort()
    return {
        "chunks": len(lags),
        "p50_ms": statistics.median(lags),
        "p99_ms": lags[int(len(lags) * 0.99) - 1],
        "bytes_per_chunk": used / entries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--words", type=int, default=2000)
    parser.add_argument("--delay", type=float, default=0.002)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rounds: list[dict[str, float]] = []
    with (
        tempfile.TemporaryDirectory(prefix="coditect-bench-stream-") as name,
        RedisServer(Path(name) / "redis") as server,
    ):
        settings = Settings(home=Path(name) / "home", broker_url=server.url, log_level="WARNING")
        registry = Registry.from_url(settings.state_url)
        worker = WorkerProcess(settings, ["talk"], concurrency=1, log_path=Path(name) / "w.log").start()
        try:
            worker.wait_ready(registry, timeout=60)
            rounds = [one_round(settings, args.words, args.delay) for _ in range(args.repeats)]
        finally:
            worker.stop()
            registry.client.close()
    report: dict[str, Any] = {k: round(statistics.median(r[k] for r in rounds), 2) for k in rounds[0]}
    print(json.dumps(report, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
