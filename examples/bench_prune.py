"""How long ``coditect-tasks history prune`` takes on a history of 100,000 finished runs.

Run: ``.venv/bin/python examples/bench_prune.py [--runs N] [--database-url URL]`` (default: a
temporary SQLite file). Writes N recorded diamond runs (4 nodes, 10 transitions each) straight
into the history tables, then times ``HistoryStore.prune`` deleting all of them, and prints the
database's bytes per run (SQLite) before the prune.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from coditect_tasks.history.models import NodeRecord, RunRecord, Transition
from coditect_tasks.history.store import HistoryStore


def fill(store: HistoryStore, runs: int) -> None:
    finished = (datetime.now(UTC) - timedelta(days=40)).isoformat(timespec="microseconds")
    batch = 5_000
    with store.db.begin() as conn:
        for start in range(0, runs, batch):
            ids = [f"run{i:08d}" for i in range(start, min(start + batch, runs))]
            conn.execute(
                insert(RunRecord),
                [
                    {
                        "run_id": r,
                        "name": "diamond",
                        "status": "succeeded",
                        "submitted_at": finished,
                        "finished_at": finished,
                    }
                    for r in ids
                ],
            )
            conn.execute(
                insert(NodeRecord),
                [
                    {"run_id": r, "node_id": n, "agent": "echo", "status": "succeeded", "attempts": 1, "result": "{}"}
                    for r in ids
                    for n in "abcd"
                ],
            )
            conn.execute(
                insert(Transition),
                [
                    {
                        "stream_id": f"{r}-{k}",
                        "run_id": r,
                        "node_id": "abcd"[k % 4],
                        "status": "running",
                        "at": finished,
                    }
                    for r in ids
                    for k in range(10)
                ],
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.db"
        store = HistoryStore(args.database_url or f"sqlite:///{path}")
        fill(store, args.runs)
        if path.exists():
            print(f"history database: {path.stat().st_size / args.runs:.0f} bytes per run ({args.runs} runs)")
        started = time.perf_counter()
        deleted = store.prune((datetime.now(UTC) - timedelta(days=30)).isoformat(timespec="microseconds"))
        print(f"prune --older-than 30d: {deleted} runs deleted in {time.perf_counter() - started:.1f} s")
        store.close()


if __name__ == "__main__":
    main()
