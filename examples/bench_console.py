"""Issue 34's figures for the console, on real processes (a Redis, ``serve``, worker pools).

1. Render: the time ``serve`` takes to answer what the overview and the runs page read, with
   ``--runs`` runs (4 nodes each, a tenth failed, spread over a day) in the history and
   ``--queued`` nodes queued with no worker to take them; medians and p95 of ``--requests`` each,
   on loopback (the client's own time is under a millisecond of it).
2. Live (``--live``): two pools of 4 processes take ``--rate`` runs a second of one ``echo`` node
   for ``--seconds``, while Chromium keeps the runs page open; for each run, the time from its
   ``finished_at`` to the page showing it succeeded.

    python examples/bench_console.py [--runs 100000] [--queued 10000] [--live] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from coditect_tasks import Client, Dag
from coditect_tasks.embedded import WorkerProcess
from coditect_tasks.history.models import NodeRecord, RunRecord
from coditect_tasks.history.store import HistoryStore
from coditect_tasks.redis_server import RedisServer, free_port, stop_process
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

TOKEN = "bench-console"
#: label -> (path, query); "DAY_AGO" stands for the time a day ago.
ENDPOINTS: dict[str, tuple[str, dict[str, str]]] = {
    "overview (throughput cached)": ("/api/overview", {}),
    "runs, first page": ("/api/runs", {"limit": "50"}),
    "runs, failed": ("/api/runs", {"limit": "50", "status": "failed"}),
    "runs, search by name": ("/api/runs", {"limit": "50", "search": "nightly"}),
    "runs, a day ago": ("/api/runs", {"limit": "50", "until": "DAY_AGO"}),
    "agent page": ("/api/agents/echo", {}),
    "overview page (HTML)": ("/", {}),
}


def fill_history(store: HistoryStore, runs: int) -> None:
    """``runs`` recorded runs of 4 nodes, submitted over the last day, a tenth failed."""
    now = datetime.now(UTC)
    draw = random.Random(7)
    for start in range(0, runs, 10_000):
        run_rows, node_rows = [], []
        for i in range(start, min(runs, start + 10_000)):
            submitted = now - timedelta(seconds=draw.uniform(0, 86_400))
            finished = submitted + timedelta(seconds=draw.uniform(0.05, 30))
            status = "failed" if i % 10 == 0 else "succeeded"
            run_id = f"{i:08x}{draw.getrandbits(96):024x}"
            run_rows.append(
                {
                    "run_id": run_id,
                    "name": ("nightly" if i % 7 == 0 else "review") + f"-{i % 50}",
                    "status": status,
                    "submitted_at": submitted.isoformat(timespec="microseconds"),
                    "finished_at": finished.isoformat(timespec="microseconds"),
                }
            )
            for n in range(4):
                node_rows.append(
                    {
                        "run_id": run_id,
                        "node_id": f"n{n}",
                        "agent": ("echo", "emit", "sleep", "flaky")[n],
                        "status": "failed" if status == "failed" and n == 3 else "succeeded",
                        "attempts": 1,
                        "started_at": submitted.isoformat(timespec="microseconds"),
                        "finished_at": finished.isoformat(timespec="microseconds"),
                    }
                )
        with store.db.begin() as conn:
            conn.execute(insert(RunRecord), run_rows)
            conn.execute(insert(NodeRecord), node_rows)


def timed(http: httpx.Client, path: str, query: dict[str, str], requests: int) -> tuple[float, float]:
    seconds = []
    for _ in range(requests):
        started = time.perf_counter()
        reply = http.get(path, params=query)
        seconds.append(time.perf_counter() - started)
        reply.raise_for_status()
    seconds.sort()
    return statistics.median(seconds) * 1000, seconds[max(0, int(len(seconds) * 0.95) - 1)] * 1000


def serve(settings: Settings, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, **settings.environment(), "CODITECT_API_TOKEN": TOKEN}
    log = (folder / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "coditect_tasks", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/openapi.json", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"serve did not answer: see {folder / 'serve.log'}")
        time.sleep(0.1)


def render(url: str, requests: int) -> dict[str, Any]:
    day_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    figures: dict[str, Any] = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
        started = time.perf_counter()
        http.get("/api/overview").raise_for_status()
        figures["overview, throughput read (every 10 s)"] = {"ms": round((time.perf_counter() - started) * 1000, 1)}
        cold = []  # a filter not asked for in the last 2 s: its counts per status are read too
        for i in range(requests):
            started = time.perf_counter()
            http.get("/api/runs", params={"limit": "50", "search": f"review-{i}"}).raise_for_status()
            cold.append(time.perf_counter() - started)
        cold.sort()
        figures["runs, a new filter (counts read)"] = {
            "p50_ms": round(statistics.median(cold) * 1000, 1),
            "p95_ms": round(cold[max(0, int(len(cold) * 0.95) - 1)] * 1000, 1),
        }
        for label, (path, query) in ENDPOINTS.items():
            query = {k: day_ago if v == "DAY_AGO" else v for k, v in query.items()}
            p50, p95 = timed(http, path, query, requests)
            figures[label] = {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1)}
    return figures


def live(url: str, settings: Settings, rate: float, seconds: float) -> dict[str, Any]:
    """Seconds from each run's end to the open runs page showing it succeeded."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        raise SystemExit("--live needs Debian's chromium (apt-get install chromium)")
    dag = Dag("live")
    dag.node("a", "echo")
    with sync_playwright() as playwright, Client(settings) as client:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/runs?token={TOKEN}")
        page.wait_for_selector("body[data-ready=true]")
        page.evaluate(
            """() => { window.__seen = {}; new MutationObserver(() => {
                for (const row of document.querySelectorAll('#runs tbody tr[data-status=succeeded]'))
                  if (!(row.dataset.run in window.__seen)) window.__seen[row.dataset.run] = Date.now();
              }).observe(document.querySelector('#runs tbody'),
                         {subtree: true, childList: true, attributes: true}); }"""
        )
        runs = []
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            runs.append(client.submit(dag))
            time.sleep(max(0.0, started + len(runs) / rate - time.monotonic()))
        for run in runs:
            run.wait(timeout=60)
        time.sleep(2)
        seen = page.evaluate("window.__seen")
        browser.close()
        lags = sorted(
            seen[run.id] / 1000 - datetime.fromisoformat(run.status()["finished_at"]).timestamp()
            for run in runs
            if run.id in seen
        )
    return {
        "runs": len(runs),
        "seen": len(lags),
        "p50_s": round(statistics.median(lags), 3),
        "p95_s": round(lags[int(len(lags) * 0.95) - 1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--live", action="store_true")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="coditect-bench-console-") as name:
        folder = Path(name)
        with RedisServer(folder / "redis") as redis_server:
            settings = Settings(home=folder / "home", broker_url=redis_server.url, log_level="WARNING")
            fill_history(HistoryStore.from_settings(settings), args.runs)
            backlog = Dag("backlog")
            for i in range(args.queued):
                backlog.node(f"q{i}", "emit")  # no worker serves emit here: every node stays queued
            with Client(settings) as client:
                client.submit(backlog)
            proc, url = serve(settings, folder)
            workers = []
            try:
                report["render"] = render(url, args.requests)
                if args.live:
                    registry = Registry.from_url(settings.state_url)
                    workers = [
                        WorkerProcess(settings, ["echo"], concurrency=4, log_path=folder / f"w{i}.log").start()
                        for i in range(2)
                    ]
                    for worker in workers:
                        worker.wait_ready(registry, timeout=60)
                    report["live"] = live(url, settings, args.rate, args.seconds)
            finally:
                for worker in workers:
                    worker.stop()
                stop_process(proc, 10)
    print(json.dumps(report, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
