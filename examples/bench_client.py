"""Issue 18's figures: the orchestrator clients on a real stack (embedded Redis, local workers).

1. 10,000 ``submit()`` calls from one process, module-level and through one ``Client``: open file
   descriptors, Redis ``connected_clients`` and RSS before and after.
2. One event loop: 1,000 runs submitted and awaited at once through one ``AsyncClient``, 50 of
   them long: when the short runs' waits return, against the long runs' end.
3. Two processes × 1,000 submits racing on the same 1,000 idempotency keys: runs made; then an
   orchestrator SIGKILLed right after its submits and restarted with the same keys.

    python examples/bench_client.py [--submits 10000]

(Submit latency against plain Celery's ``chain(a, chord([b, c], d)).apply_async()`` is a row of
``coditect-tasks bench``.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import redis

from coditect_tasks import AsyncClient, Dag, keys
from coditect_tasks.embedded import LocalStack
from coditect_tasks.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

LEAK = """
import os, sys, psutil, redis
import coditect_tasks
from coditect_tasks import Client, Dag
dag = Dag("leak")
dag.node("a", "noop")
dag.node("b", "noop", after=["a"])
probe = redis.Redis.from_url(os.environ["CODITECT_BROKER_URL"])
me = psutil.Process()
def sample():
    return me.num_fds(), probe.info("clients")["connected_clients"], me.memory_info().rss
def measure(submit):
    submit(dag)
    before = sample()
    for _ in range(int(sys.argv[1])):
        submit(dag)
    after = sample()
    return " ".join(str(b - a) for a, b in zip(before, after))
print("module", measure(coditect_tasks.submit))
with Client() as client:
    print("client", measure(client.submit))
"""

RACER = """
import sys
from coditect_tasks import Client, Dag
dag = Dag("raced")
dag.node("a", "noop")
with Client() as client:
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(int(sys.argv[1])):
        print(f"key-{i}", client.submit(dag, idempotency_key=f"key-{i}").id, flush=True)
"""


def leak(env: dict[str, str], submits: int) -> None:
    done = subprocess.run([sys.executable, "-c", LEAK, str(submits)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stderr)
    print(f"1. {submits:,} submits from one process (growth of fds, Redis clients, RSS bytes):")
    for line in done.stdout.splitlines():
        way, fds, clients, rss = line.split()
        print(f"   {way:7} fds {int(fds):+d}, Redis clients {int(clients):+d}, RSS {int(rss) / 2**20:+.1f} MiB")


async def one_loop(settings: Settings, runs: int, long_runs: int) -> None:
    short = Dag("short")
    short.node("a", "noop")
    short.node("b", "noop", after=["a"])
    slow = Dag("long")
    slow.node("s", "sleep", params={"seconds": 1})
    async with AsyncClient(settings) as client:
        started = time.monotonic()
        handles = await asyncio.gather(*(client.submit(slow if i < long_runs else short) for i in range(runs)))
        submitted = time.monotonic() - started

        async def timed(run: Any) -> tuple[float, datetime]:
            await run.wait(300)
            return time.monotonic() - started, datetime.now(UTC)

        waits_began = datetime.now(UTC)
        ends = await asyncio.gather(*(timed(run) for run in handles))
        docs = await asyncio.gather(*(run.status() for run in handles))
    # how long after its run ended (or, for one that ended during the submits, after the waits
    # began) each wait returned: the waits do not queue behind each other
    lags = sorted(
        (back - max(datetime.fromisoformat(doc["finished_at"]), waits_began)).total_seconds() * 1000
        for (_, back), doc in zip(ends, docs, strict=True)
    )
    shorts = sorted(t for t, _ in ends[long_runs:])
    longs = sorted(t for t, _ in ends[:long_runs])
    if not long_runs:
        return
    print(f"2. one event loop, {runs:,} runs submitted and awaited at once ({long_runs} of them sleep 1 s):")
    print(
        f"   all {runs:,} submitted in {submitted:.2f} s, all succeeded: "
        f"{all(doc['status'] == 'succeeded' for doc in docs)}"
    )
    print(
        f"   short runs' waits back at {shorts[0]:.2f}–{shorts[-1]:.2f} s (median {shorts[len(shorts) // 2]:.2f}), "
        f"long ones at {longs[0]:.2f}–{longs[-1]:.2f} s"
    )
    print(
        f"   a wait returns after its run ended: p50 {lags[len(lags) // 2]:.1f} ms, "
        f"p99 {lags[int(0.99 * len(lags))]:.1f} ms, max {lags[-1]:.1f} ms"
    )


def race(env: dict[str, str], state: redis.Redis, count: int) -> None:
    state.delete(*state.keys(keys.PREFIX + "idempotency:*") or ["-"])
    before = state.zcard(keys.RUNS)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(count)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    told = [dict(line.split() for line in proc.communicate()[0].splitlines()) for proc in procs]
    made = state.zcard(keys.RUNS) - before
    print(
        f"3. two processes × {count:,} submits on the same {count:,} keys: {made:,} runs made, "
        f"{sum(told[0][k] == told[1][k] for k in told[0]):,} keys answered with the same run in both"
    )
    killed = subprocess.Popen(
        [sys.executable, "-c", RACER.replace("sys.stdin.readline()", "pass"), str(count)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert killed.stdout is not None
    killed.stdout.readline()
    for _ in range(count):
        killed.stdout.readline()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    after_kill = state.zcard(keys.RUNS)
    subprocess.run(
        [sys.executable, "-c", RACER.replace("sys.stdin.readline()", "pass"), str(count)],
        env=env,
        capture_output=True,
        check=True,
    )
    print(
        f"   an orchestrator SIGKILLed after its {count:,} submits, restarted with the same keys: "
        f"{state.zcard(keys.RUNS) - after_kill} new runs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submits", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coditect-bench-client-") as folder:
        base = Settings(home=Path(folder), log_level="WARNING")
        with LocalStack.temporary(base, ["noop", "sleep"], "bench-client", workers=1, concurrency=4) as stack:
            stack.start()
            settings = stack.settings
            env = {k: v for k, v in os.environ.items() if not k.startswith("CODITECT_")}
            env.update(settings.environment(), PYTHONPATH=str(ROOT))
            state = redis.Redis.from_url(settings.state_url, decode_responses=True)
            asyncio.run(one_loop(settings, 200, 0))  # warm-up: every pool process has its connections
            leak(env, args.submits)
            asyncio.run(one_loop(settings, args.runs, 50))
            race(env, state, args.runs)
            print(f"   (this process: {psutil.Process().num_fds()} fds at the end)")


if __name__ == "__main__":
    main()
