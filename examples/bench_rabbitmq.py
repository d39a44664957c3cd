"""The engine on RabbitMQ against plain Celery on the same RabbitMQ, in one run.

Starts Debian's rabbitmq-server (as a plain process, loopback only) and a Redis for run state
and Celery's results, then runs ``coditect-tasks bench --json`` against them: the same worker
processes serve plain Celery's canvas and the engine's runs. Prints the figures and writes the
JSON next to the working directory's ``bench-rabbitmq.json``.

    python examples/bench_rabbitmq.py [--repeats 3] [--fan 1000] [--length 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from coditect_tasks.rabbitmq_server import RabbitServer
from coditect_tasks.redis_server import RedisServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fan", type=int, default=1000)
    parser.add_argument("--length", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coditect-bench-rabbitmq-") as folder:
        base = Path(folder)
        with RabbitServer(base / "rabbitmq") as rabbit, RedisServer(base / "redis", appendonly=False) as state:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CODITECT_")}
            env.update(CODITECT_BROKER_URL=rabbit.url, CODITECT_REDIS_URL=state.url, CODITECT_HOME=str(base / "home"))
            command = [sys.executable, "-m", "coditect_tasks", "bench", "--json"]
            command += ["--repeats", str(args.repeats), "--fan", str(args.fan), "--length", str(args.length)]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"bench failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    report = json.loads(done.stdout)
    Path("bench-rabbitmq.json").write_text(json.dumps(report, indent=2) + "\n")
    f, c, d, cap = report["fanout"], report["chain"], report["dispatch"], report["capacity"]
    print(f"on RabbitMQ, medians of {report['repeats']} (plain Celery / coditect):")
    print(
        f"  fan-out of {f['tasks']}: {f['celery_tasks_per_s']} / {f['coditect_tasks_per_s']} tasks/s "
        f"(ratio {f['throughput_ratio']})"
    )
    print(
        f"  chain of {c['length']}: {c['celery_seconds']} / {c['coditect_seconds']} s (ratio {c['speed_ratio']}); "
        f"edge p50/p99 {c['edge_latency_p50_ms']}/{c['edge_latency_p99_ms']} ms, "
        f"Celery {c['celery_ms_per_hop']} ms per hop"
    )
    print(
        f"  dispatch p50/p99: {d['celery_p50_ms']}/{d['celery_p99_ms']} vs "
        f"{d['coditect_p50_ms']}/{d['coditect_p99_ms']} ms"
    )
    print(
        f"  capacity: {cap['celery_diamonds_per_s']} / {cap['coditect_diamonds_per_s']} diamond runs/s "
        f"(ratio {cap['ratio']})"
    )


if __name__ == "__main__":
    main()
