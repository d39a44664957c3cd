"""Issue 19's burst figure: finished runs leave Redis after the retention window and still read the same.

An embedded stack (real redis-server, one local worker pool, the recorder) with a short
``CODITECT_LIVE_RETENTION``: ``--runs`` runs of the soak's diamond (``load.scenario.default_dag``)
are submitted at once and awaited, each run's document is read while it is live, then, once the
window is over, Redis's keys and memory are compared with before the burst and every document,
now read from the history, with its live one. Exits 1 if more than 36 keys or 4 MB stay behind,
or a document differs.

    python examples/bench_retention.py [--runs 2000] [--retention 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import redis

from coditect_tasks import Client, keys
from coditect_tasks.embedded import LocalStack
from coditect_tasks.load.scenario import default_dag
from coditect_tasks.settings import Settings


def settled(state: redis.Redis, timeout: float) -> tuple[int, int]:
    """(keys, used_memory) once no run is unrecorded or retired: every window is over."""
    deadline = time.monotonic() + timeout
    while state.zcard(keys.UNRECORDED) or state.zcard(keys.RETIRED):
        if time.monotonic() > deadline:
            sys.exit(f"runs still retained after {timeout:.0f} s")
        time.sleep(0.5)
    return int(state.dbsize()), int(state.info("memory")["used_memory"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument("--retention", type=int, default=60, help="CODITECT_LIVE_RETENTION, seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coditect-bench-retention-") as folder:
        base = Settings(home=Path(folder), log_level="WARNING", live_retention=args.retention)
        with LocalStack.temporary(base, ["noop", "echo"], "bench-retention", recorder=True) as stack:
            stack.start()
            state = redis.Redis.from_url(stack.settings.state_url, decode_responses=True)
            with Client(stack.settings) as client:
                client.submit(default_dag()).result(60)  # queues, counters and scripts exist now
                keys_before, memory_before = settled(state, args.retention + 60)
                started = time.monotonic()
                runs = [client.submit(default_dag()) for _ in range(args.runs)]
                for run in runs:
                    run.result(300)
                live = {run.id: run.status() for run in runs}
                seconds = time.monotonic() - started
                if not state.exists(keys.run_prefix(runs[0].id) + "run"):
                    sys.exit(f"the burst outlasted the {args.retention} s window; raise --retention")
                keys_held, memory_held = int(state.dbsize()), int(state.info("memory")["used_memory"])
                keys_after, memory_after = settled(state, args.retention + 60)
                differ = [run.id for run in runs if run.status() != live[run.id]]
    print(f"{args.runs:,} diamond runs in {seconds:.1f} s, retention {args.retention} s")
    print(f"  Redis keys   {keys_before:,} before, {keys_held:,} in the window, {keys_after:,} after")
    print(
        f"  Redis memory {memory_before / 1e6:.1f} MB before, {memory_held / 1e6:.1f} MB in the window "
        f"({(memory_held - memory_before) / args.runs:,.0f} B a run), {memory_after / 1e6:.1f} MB after"
    )
    print(f"  documents read from the history that differ from the live ones: {len(differ)}")
    if keys_after - keys_before > 36 or memory_after - memory_before > 4 * 1024 * 1024 or differ:
        sys.exit(1)


if __name__ == "__main__":
    main()
