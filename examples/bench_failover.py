"""A Redis Cluster primary SIGKILLed with hundreds of runs in flight: three primaries with two
replicas each (16 cells, ``CODITECT_REDIS_MIN_REPLICAS=1``), a broker Redis beside them, one local
stack of 2 pools. ``--runs`` runs (a sleep, two no-ops, a sleep) are submitted and acknowledged,
then the primary holding the most cells is killed. Reported: the timeline (kill, promotion, the
first node begun on the failed primary's cells after the kill), runs lost, and nodes that ran more
than once.

    python examples/bench_failover.py [--runs 300] [--json]
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from coditect_tasks import Dag, keys
from coditect_tasks.client import Client
from coditect_tasks.embedded import LocalStack
from coditect_tasks.redis_cluster import ClusterGroup
from coditect_tasks.redis_server import RedisServer
from coditect_tasks.settings import Settings


def work(i: int) -> Dag:
    dag = Dag(f"inflight-{i}")
    dag.node("a", "sleep", params={"seconds": 0.1})
    dag.node("b", "noop", after=["a"])
    dag.node("c", "noop", after=["a"])
    dag.node("d", "sleep", params={"seconds": 0.1}, after=["b", "c"])
    return dag


def measure(runs: int, folder: Path) -> dict[str, Any]:
    cluster = ClusterGroup(folder / "cluster", replicas=2).start()
    broker = RedisServer(folder / "broker").start()
    try:
        settings = Settings(home=folder / "home", broker_url=broker.url, redis_url=cluster.url, log_level="WARNING")
        with LocalStack.temporary(settings, ["noop", "sleep"], "bench-failover", workers=2, concurrency=4) as stack:
            stack.start()
            with Client(settings) as client:
                submitted = [client.submit(work(i), idempotency_key=f"inflight-{i}") for i in range(runs)]
                owners = collections.Counter(cluster.primary_of(keys.route(keys.cell_of(r.id))).port for r in submitted)
                victim_port = owners.most_common(1)[0][0]
                victim = next(s for s in cluster.servers if s.port == victim_port)
                cells = [c for c in range(settings.cells) if cluster.primary_of(keys.route(c)).port == victim_port]
                in_flight = sum(1 for r in submitted if r.state() == "running")
                killed_at = time.time()
                victim.kill()
                promoted_at = None
                while promoted_at is None and time.time() - killed_at < 60:
                    try:
                        if cluster.primary_of(keys.route(cells[0])) is not victim:
                            promoted_at = time.time()
                    except Exception:  # the cluster map moves under the question
                        pass
                    time.sleep(0.05)
                states = [r.wait(timeout=300) for r in submitted]
                docs = [r.status() for r in submitted]
    finally:
        broker.stop()
        cluster.stop()
    on_victim = [d for d in docs if keys.cell_of(d["run_id"]) in cells]
    begun_after = [
        datetime.fromisoformat(n["started_at"]).timestamp()
        for d in on_victim
        for n in d["nodes"].values()
        if n["started_at"] and datetime.fromisoformat(n["started_at"]).timestamp() > killed_at
    ]
    return {
        "runs": runs,
        "in_flight_at_kill": in_flight,
        "runs_on_failed_primary": len(on_victim),
        "succeeded": states.count("succeeded"),
        "lost": sum(1 for s in states if s != "succeeded"),
        "nodes_run_more_than_once": sum(1 for d in docs for n in d["nodes"].values() if (n["attempts"] or 0) > 1),
        "promoted_after_s": round(promoted_at - killed_at, 2) if promoted_at else None,
        "first_node_on_failed_cells_after_s": round(min(begun_after) - killed_at, 2) if begun_after else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coditect-bench-failover-") as folder:
        report = measure(args.runs, Path(folder))
    print(json.dumps(report, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
