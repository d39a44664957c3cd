"""The HTTP face's figures: submit latency, event delivery lag, and a large run page's load time.

On a local stack of its own (one pool of 2 processes) and a ``coditect-tasks serve`` process:

* submit latency: 200 ``POST /api/runs`` of a 4-node diamond, one after another, beside 200
  in-process ``submit()`` calls of the same DAG (what the API adds is HTTP, JSON and a thread hop);
* event lag: for 20 runs of a 20-node chain, the time from a transition (its ``ts``, taken by the
  process that made it) to a client of ``GET /api/runs/{id}/events`` reading it, for every event
  that happened after the client connected (replayed history is not a delivery);
* page load: ``/runs/{id}`` of a finished 1,000-node run (a root, 998 wide, a join) in Debian's
  chromium, from navigation to the graph drawn (``body[data-ready]``), 5 times.

    python examples/bench_api.py

Prints p50/p99 (ms) per figure.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime

import httpx
from rich.console import Console
from rich.table import Table

from coditect_tasks import Dag, submit
from coditect_tasks.app import create_app
from coditect_tasks.bench import percentile
from coditect_tasks.embedded import LocalStack
from coditect_tasks.redis_server import free_port, stop_process
from coditect_tasks.settings import Settings


def diamond() -> dict[str, object]:
    return {
        "name": "diamond",
        "nodes": [
            {"id": "a", "agent": "noop"},
            {"id": "b", "agent": "noop", "after": ["a"]},
            {"id": "c", "agent": "noop", "after": ["a"]},
            {"id": "d", "agent": "noop", "after": ["b", "c"]},
        ],
    }


def chain(n: int) -> dict[str, object]:
    first = {"id": "n0", "agent": "sleep", "params": {"seconds": 0.3}}  # time for the client to connect
    rest = [{"id": f"n{i}", "agent": "noop", "after": [f"n{i - 1}"]} for i in range(1, n)]
    return {"name": "chain", "nodes": [first, *rest]}


def wide(n: int) -> dict[str, object]:
    nodes = [{"id": "root", "agent": "noop"}]
    nodes += [{"id": f"w{i}", "agent": "noop", "after": ["root"]} for i in range(n - 2)]
    nodes.append({"id": "join", "agent": "noop", "after": [f"w{i}" for i in range(n - 2)]})
    return {"name": f"wide-{n}", "nodes": nodes}


def submit_ms(http: httpx.Client, app: object, count: int) -> tuple[list[float], list[float]]:
    api, direct = [], []
    dag = Dag.from_json(diamond())
    for _ in range(count):
        started = time.perf_counter()
        reply = http.post("/api/runs", json=diamond())
        api.append((time.perf_counter() - started) * 1000)
        assert reply.status_code == 201, reply.text
        started = time.perf_counter()
        submit(dag, app)
        direct.append((time.perf_counter() - started) * 1000)
    return api, direct


def event_lag_ms(http: httpx.Client, runs: int, length: int) -> list[float]:
    lags = []
    for _ in range(runs):
        run_id = http.post("/api/runs", json=chain(length)).json()["run_id"]
        with http.stream("GET", f"/api/runs/{run_id}/events", timeout=60) as reply:
            opened = time.time()
            for line in reply.iter_lines():
                if not line.startswith("data:"):
                    continue
                seen = time.time()
                event = json.loads(line[5:])
                ts = datetime.fromisoformat(event["ts"]).timestamp()
                if ts >= opened:
                    lags.append((seen - ts) * 1000)
    return lags


def page_load_ms(url: str, run_id: str, repeats: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        try:
            for _ in range(repeats):
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                started = time.perf_counter()
                page.goto(f"{url}/runs/{run_id}")
                page.wait_for_selector("body[data-ready=true]", timeout=60_000)
                times.append((time.perf_counter() - started) * 1000)
                assert page.locator("[data-node]").count() == 1000
                page.close()
        finally:
            browser.close()
    return times


def main() -> None:
    console = Console(stderr=True)
    table = Table(title="HTTP API (ms)")
    for column in ("figure", "samples", "p50", "p99"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    with LocalStack.temporary(Settings.from_env(), ["noop", "sleep"], "api", workers=1, concurrency=2) as stack:
        with console.status("starting the stack…"):
            stack.start()
        port = free_port()
        env = {**os.environ, **stack.settings.environment()}
        server = subprocess.Popen(
            [sys.executable, "-m", "coditect_tasks", "serve", "--port", str(port)], env=env, start_new_session=True
        )
        url = f"http://127.0.0.1:{port}"
        app = create_app(stack.settings)
        try:
            with httpx.Client(base_url=url, timeout=60) as http:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        http.get("/openapi.json")
                        break
                    except httpx.TransportError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
                with console.status("submits"):
                    submit_ms(http, app, 20)  # warm both paths
                    api, direct = submit_ms(http, app, 200)
                table.add_row("POST /api/runs (4-node diamond)", "200", *_cells(api))
                table.add_row("submit() in process, same DAG", "200", *_cells(direct))
                with console.status("event lag"):
                    lags = event_lag_ms(http, 20, 20)
                table.add_row("transition → SSE client", str(len(lags)), *_cells(lags))
                if shutil.which("chromium"):
                    with console.status("page load"):
                        run_id = http.post("/api/runs", json=wide(1000)).json()["run_id"]
                        while http.get(f"/api/runs/{run_id}").json()["status"] == "running":
                            time.sleep(0.2)
                        loads = page_load_ms(url, run_id, 5)
                    table.add_row("run page, 1,000 nodes: open → drawn", "5", f"{statistics.median(loads):.0f}", "")
                else:
                    console.print("chromium not found: no page-load figure")
        finally:
            app.close()
            stop_process(server, 10)
    Console().print(table)


def _cells(values: list[float]) -> tuple[str, str]:
    return f"{percentile(values, 50):.1f}", f"{percentile(values, 99):.1f}"


if __name__ == "__main__":
    main()
