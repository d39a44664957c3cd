"""Edge latency against a DAG's length and width: is it flat?

On a local stack of its own (one pool of 2 processes serving noop and echo) this runs, three
times each:

* chains of 10, 100 and 1,000 nodes, once all of one agent (a process that finishes a node takes
  its successor itself: ``Follow``) and once alternating noop and echo (every edge goes through
  the queue and the consumer): predecessor finished → successor started, per edge;
* a root fanned out to 10, 100 and 1,000 nodes that join into one: the fan-out edge (root
  finished → first of the wide layer started) and the fan-in edge (the last of the wide layer
  finished → the join started).

    python examples/bench_edges.py [--runs 3]

Prints medians over the runs (p50 and p99 of the chain edges). Flat columns mean edge latency
does not grow with the DAG.
"""

from __future__ import annotations

import argparse
import statistics

from rich.console import Console
from rich.table import Table

from coditect_tasks import Dag, submit
from coditect_tasks.app import create_app
from coditect_tasks.bench import edge_latencies_ms, percentile
from coditect_tasks.embedded import LocalStack
from coditect_tasks.footprint import wide, wide_edges_ms
from coditect_tasks.settings import Settings


def chain(n: int, agents: tuple[str, ...]) -> Dag:
    dag = Dag(f"chain-{n}")
    for i in range(n):
        dag.node(f"n{i}", agents[i % len(agents)], after=[f"n{i - 1}"] if i else [])
    return dag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    console = Console(stderr=True)
    table = Table(title=f"edge latency, ms (medians of {args.runs} runs)")
    for column in ("DAG", "nodes", "p50", "p99"):
        table.add_column(column, justify="left" if column == "DAG" else "right")
    with LocalStack.temporary(Settings.from_env(), ["noop", "echo"], "edges", workers=1, concurrency=2) as stack:
        with console.status("starting the stack…"):
            stack.start()
        app = create_app(stack.settings)
        submit(chain(20, ("noop",)), app).wait(60)  # warm the pool's processes and connections
        for label, agents in (("chain, one agent", ("noop",)), ("chain, noop/echo", ("noop", "echo"))):
            for n in (10, 100, 1_000):
                p50, p99 = [], []
                for _ in range(args.runs):
                    with console.status(f"{label}: {n} nodes"):
                        run = submit(chain(n, agents), app)
                        assert run.wait(300) == "succeeded"
                    edges = edge_latencies_ms(run.status())
                    p50.append(percentile(edges, 50))
                    p99.append(percentile(edges, 99))
                table.add_row(label, f"{n:,}", f"{statistics.median(p50):.2f}", f"{statistics.median(p99):.2f}")
        for n in (10, 100, 1_000):
            outs, intos = [], []
            for _ in range(args.runs):
                with console.status(f"fan-out/fan-in: {n} nodes wide"):
                    run = submit(wide(n), app)
                    assert run.wait(300) == "succeeded"
                out, into = wide_edges_ms(run.status())
                outs.append(out)
                intos.append(into)
            table.add_row("fan-out edge (root → wide layer)", f"{n:,}", f"{statistics.median(outs):.2f}", "")
            table.add_row("fan-in edge (wide layer → join)", f"{n:,}", f"{statistics.median(intos):.2f}", "")
        app.close()
    Console().print(table)


if __name__ == "__main__":
    main()
