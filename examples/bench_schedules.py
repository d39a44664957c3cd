"""Issue 35's figures for schedules, on real processes (a Redis, one worker pool of ``echo``, three
``coditect-tasks scheduler`` processes): a schedule every ``--every`` seconds for ``--seconds``,
two schedulers SIGKILLed half way. Reports the fire times, the runs made for them, fire times with
more than one run or none, the longest gap between runs, and how late after its fire time each run
was submitted (p50, p99).

    python examples/bench_schedules.py [--every 2] [--seconds 40] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from coditect_tasks import Client, Dag, keys
from coditect_tasks.embedded import WorkerProcess
from coditect_tasks.redis_server import RedisServer, stop_processes
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings


def measure(settings: Settings, folder: Path, every: float, seconds: float) -> dict[str, Any]:
    env = {**os.environ, **settings.environment()}
    schedulers = [
        subprocess.Popen(
            [sys.executable, "-m", "coditect_tasks", "scheduler"],
            env=env,
            stdout=(folder / f"scheduler-{i}.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for i in range(3)
    ]
    try:
        with Client(settings) as client:
            dag = Dag("tick")
            dag.node("say", "echo", params={"text": "tick"})
            client.schedules.add("tick", dag, every=every, overlap="allow")
            started = time.time()
            time.sleep(seconds / 2)
            for proc in schedulers[:2]:
                proc.send_signal(signal.SIGKILL)
            killed = time.time()
            time.sleep(started + seconds - time.time())
            client.schedules.pause("tick")
            runs: dict[int, list[float]] = {}
            for run_id in client.redis.zrange(keys.RUNS, 0, -1):
                fields = client.redis.hmget(keys.run_prefix(run_id) + "run", "schedule", "fire_time", "submitted_at")
                if fields[0] == "tick":
                    fire = datetime.fromisoformat(fields[1]).timestamp()
                    runs.setdefault(round(fire * 1000), []).append(datetime.fromisoformat(fields[2]).timestamp() - fire)
    finally:
        stop_processes(schedulers, timeout=10)
    fires = sorted(runs)
    step = round(every * 1000)
    late = sorted(lag for lags in runs.values() for lag in lags)
    return {
        "fire_times": len(fires),
        "runs": sum(len(v) for v in runs.values()),
        "fire_times_with_two_runs": sum(1 for v in runs.values() if len(v) > 1),
        "fire_times_missed": len([t for t in range(fires[0], fires[-1], step) if t not in runs]),
        "longest_gap_s": max((b - a) / 1000 for a, b in itertools.pairwise(fires)),
        "killed_two_at_s": round(killed - started, 1),
        "submit_late_p50_ms": round(statistics.median(late) * 1000, 1),
        "submit_late_p99_ms": round(late[max(0, int(len(late) * 0.99) - 1)] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="coditect-bench-schedules-") as name,
        RedisServer(Path(name) / "redis") as server,
    ):
        folder = Path(name)
        settings = Settings(home=folder / "home", broker_url=server.url, log_level="WARNING")
        registry = Registry.from_url(settings.state_url)
        worker = WorkerProcess(settings, ["echo"], concurrency=2, log_path=folder / "w.log").start()
        try:
            worker.wait_ready(registry, timeout=60)
            report = measure(settings, folder, args.every, args.seconds)
        finally:
            worker.stop()
            registry.client.close()
    print(json.dumps(report, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
