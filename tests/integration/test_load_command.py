"""``coditect-tasks load`` as a user runs it, judged on what it reports, not on speed.

The scenario tests in ``tests/load`` judge speed and run without coverage measurement;
this one runs measured, so the load path (command, runner, locustfile, user) counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from coditect_tasks.load.report import read_stats
from coditect_tasks.settings import Settings

from ..conftest import WorkerFactory, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.load]


def test_a_short_steady_load_reports_every_run_and_its_dispatch(
    settings: Settings, worker_factory: WorkerFactory
) -> None:
    worker_factory(["noop", "echo"], concurrency=2)
    result = run_cli(["load", "steady", "--scale", "0.01", "--json"], settings.environment(), timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["scenario"] == "steady" and report["dag"] == "diamond"
    assert report["run"]["requests"] >= 30 and report["run"]["failures"] == 0
    assert report["dispatch"]["requests"] == report["run"]["requests"]
    csv = Path(report["reports"]["csv"])
    assert csv.is_relative_to(settings.home / "load") and Path(report["reports"]["html"]).stat().st_size > 0
    assert read_stats(csv.with_name("locust"))["run"].requests == report["run"]["requests"]
    assert set(report["drift"]) == {"dispatch", "run"}  # p99, first sixth of the run against the last
    usage = report["resources"]  # sampled beside the latency: Redis memory and keys, worker RSS and files
    assert usage["samples"] >= 2 and usage["growing"] == []
    timeline = Path(usage["timeline"]).read_text().splitlines()
    assert timeline[0].startswith(
        "at,redis_bytes,redis_keys,worker_rss,worker_fds,redis_cpu,worker_cpu,host_cpu,requests_per_s"
    )
    rows = [dict(zip(timeline[0].split(","), row.split(","), strict=True)) for row in timeline[1:]]
    first = rows[0]
    assert int(first["redis_bytes"]) > 0 and int(first["worker_rss"]) > 10_000_000 and int(first["worker_fds"]) > 0
    # CPU in cores since the previous sample: the workers and Redis did work, the machine was busy
    assert max(float(r["worker_cpu"]) for r in rows) > 0.01 and max(float(r["redis_cpu"]) for r in rows) > 0.001
    # (the kernel counts CPU time in ticks: a second's sample of a saturated machine may read a tick over)
    assert all(float(r["host_cpu"]) <= psutil.cpu_count() * 1.05 for r in rows)
    assert max(float(r["host_cpu"]) for r in rows) > 0
    assert Path(usage["plot"]).read_text().count("<polyline") == 7


def test_compare_runs_plain_celery_beside_the_platform_on_the_same_stack(
    settings: Settings, worker_factory: WorkerFactory
) -> None:
    worker_factory(["noop", "echo"], concurrency=2)
    result = run_cli(["load", "steady", "--scale", "0.01", "--compare", "--json"], settings.environment(), timeout=240)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    report = json.loads(result.stdout)
    both = report["compare"]
    assert set(both) == {"coditect", "celery"}
    for system, figures in both.items():  # open loop: every run offered arrives, and each one ends
        assert figures["run"]["requests"] >= 50 and figures["run"]["failures"] == 0, system
        assert figures["dispatch"]["requests"] == figures["run"]["requests"], system
    assert both["coditect"]["run"] == report["run"]
    table = Path(report["reports"]["compare"]).with_name("compare.csv").read_text().splitlines()
    assert table[0].startswith("system,request,count") and len(table) == 5
    page = Path(report["reports"]["compare"]).read_text()
    assert page.count("<polyline") == 8  # dispatch and run, p50 and p99, one line per system
