"""How fast the history store records transitions: 1,000 diamond runs (14,000 entries) into a
fresh SQLite, in batches of the given size (the recorder reads up to 500 at a time).

    python examples/bench_recorder.py [BATCH ...]      # default: 500 20
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

from coditect_tasks.history.store import HistoryStore

AT = "2026-11-30T00:00:00+00:00"
NODES = ("plan", "left", "right", "join")


def entries_and_runs(runs: int = 1000) -> tuple[list[tuple[str, dict[str, str]]], dict[str, dict[str, str]]]:
    dag = json.dumps({"name": "diamond", "nodes": [{"id": n, "agent": "noop", "after": []} for n in NODES]})
    entries: list[tuple[str, dict[str, str]]] = []
    for r in range(runs):
        run = f"run{r:05d}"
        steps = [("", "running", {})]
        for node in NODES:
            steps += [
                (node, "queued", {}),
                (node, "running", {"attempt": "1", "worker": "w"}),
                (node, "succeeded", {"attempt": "1", "result": "null"}),
            ]
        steps.append(("", "succeeded", {}))
        for node, status, extra in steps:
            entries.append((f"{len(entries) + 1}-0", {"run": run, "node": node, "status": status, "at": AT, **extra}))
    info = {f"run{r:05d}": {"name": "diamond", "dag": dag, "submitted_at": AT} for r in range(runs)}
    return entries, info


def main() -> None:
    entries, runs = entries_and_runs()
    for batch in [int(a) for a in sys.argv[1:]] or [500, 20]:
        with tempfile.TemporaryDirectory() as folder:
            store = HistoryStore(f"sqlite:///{folder}/history.db")
            started = time.perf_counter()
            for start in range(0, len(entries), batch):
                store.apply(entries[start : start + batch], runs)
            seconds = time.perf_counter() - started
            store.close()
        each = seconds / len(entries) * 1e6
        print(f"batches of {batch}: {len(entries)} entries in {seconds:.2f} s ({each:.0f} µs each)")


if __name__ == "__main__":
    main()
