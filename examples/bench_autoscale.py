"""How much earlier an autoscaler sees work on demand + upcoming than on queue length.

A three-stage DAG (``plan``: one sleep node → ``code``: eight echo nodes → ``merge``: one noop
node) runs on the embedded stack with only the sleep pool up: the echo and noop pools are at
zero, as KEDA leaves idle pools. Every 50 ms the script records, per agent, the queue length
(what a list-length scaler reads) and the engine's ``demand`` + ``upcoming`` counters (what the
ScaledObjects in k8s/ read through the exporter). When the echo queue first holds a message (the
moment a list-length scaler would start the pool) it starts the echo and noop pool, and the run
goes on to the end. The series go to a CSV; the table gives, per run and agent, when each signal
first showed work (seconds after submit) and the lead of demand + upcoming. The lead is the time
an autoscaler gains to start pods before the work is queued.

    python examples/bench_autoscale.py [--runs 3] [--plan-seconds 3] [--csv autoscale.csv]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import create_app
from coditect_tasks.connection import redis_client
from coditect_tasks.embedded import LocalStack, WorkerProcess
from coditect_tasks.settings import Settings

AGENTS = ("echo", "noop")


def three_stages(plan_seconds: float) -> Dag:
    dag = Dag("three-stages")
    dag.node("plan", "sleep", params={"seconds": plan_seconds})
    for k in range(8):
        dag.node(f"code{k}", "echo", after=["plan"])
    dag.node("merge", "noop", after=[f"code{k}" for k in range(8)])
    return dag


def one_run(stack: LocalStack, plan_seconds: float, rows: list[dict[str, object]], index: int) -> dict[str, float]:
    """Drive one run; returns ``<agent>|queue`` and ``<agent>|frontier``: first second each showed work."""
    settings = stack.settings
    client = redis_client(settings.state_url)
    app = create_app(settings)
    pool: WorkerProcess | None = None
    first: dict[str, float] = {}
    try:
        run = submit(three_stages(plan_seconds), app)
        t0 = time.monotonic()
        while True:
            with client.pipeline(transaction=False) as pipe:
                for agent in AGENTS:
                    pipe.llen(keys.agent_queue(agent))
                pipe.hgetall(keys.FRONTIER)
                pipe.hget(keys.run_prefix(run.id) + "run", "status")
                *lengths, counters, status = pipe.execute()
            now = round(time.monotonic() - t0, 3)
            for agent, length in zip(AGENTS, lengths, strict=True):
                work = int(counters.get(f"demand|{agent}", 0)) + int(counters.get(f"upcoming|{agent}", 0))
                rows.append({"run": index, "t": now, "agent": agent, "queue_length": length, "demand_upcoming": work})
                if length and f"{agent}|queue" not in first:
                    first[f"{agent}|queue"] = now
                if work and f"{agent}|frontier" not in first:
                    first[f"{agent}|frontier"] = now
            if pool is None and "echo|queue" in first:  # a list-length scaler starts the pool only now
                pool = WorkerProcess(settings, AGENTS, concurrency=2).start()
            if status in ("succeeded", "failed", "cancelled"):
                return first
            if now > 60:
                raise SystemExit(f"run {run.id} did not finish within 60 s")
            time.sleep(0.05)
    finally:
        if pool is not None:
            pool.stop()
        app.close()
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--plan-seconds", type=float, default=3.0)
    parser.add_argument("--csv", type=Path, default=Path("autoscale.csv"))
    args = parser.parse_args()
    console = Console()
    rows: list[dict[str, object]] = []
    results = []
    with tempfile.TemporaryDirectory() as home:
        base = Settings(home=Path(home), log_level="WARNING")
        with LocalStack.temporary(base, ["sleep"], "autoscale", workers=1, concurrency=1) as stack:
            stack.start()
            for index in range(args.runs):
                results.append(one_run(stack, args.plan_seconds, rows, index))
    with args.csv.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = Table(title=f"first sign of work, seconds after submit ({args.runs} runs; series in {args.csv})")
    for column in ("run", "agent", "demand + upcoming > 0", "queue length > 0", "lead"):
        table.add_column(column, justify="right")
    leads: dict[str, list[float]] = {agent: [] for agent in AGENTS}
    for index, first in enumerate(results):
        for agent in AGENTS:
            frontier, queue = first.get(f"{agent}|frontier"), first.get(f"{agent}|queue")
            lead = queue - frontier if frontier is not None and queue is not None else None
            if lead is not None:
                leads[agent].append(lead)
            table.add_row(
                str(index + 1),
                agent,
                "-" if frontier is None else f"{frontier:.2f}",
                "never" if queue is None else f"{queue:.2f}",
                "-" if lead is None else f"{lead:.2f} s",
            )
    console.print(table)
    for agent, values in leads.items():
        if values:
            console.print(f"median lead for {agent}: {statistics.median(values):.2f} s")


if __name__ == "__main__":
    main()
