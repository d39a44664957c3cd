"""Observability on real processes: one trace per run, JSON logs with ids, /metrics, Flower with auth."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from coditect_tasks import Dag, submit
from coditect_tasks.app import CoditectApp
from coditect_tasks.observability.receiver import OtlpReceiver
from coditect_tasks.redis_server import free_port
from coditect_tasks.settings import Settings

from ..conftest import ROOT, WorkerFactory, missing, run_cli, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


def otel_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}


DIAMOND = {
    "name": "diamond",
    "nodes": [
        {"id": "plan", "agent": "emit", "params": {"value": [1, 2]}},
        {"id": "build", "agent": "sleep", "params": {"seconds": 0.3}, "after": ["plan"]},
        {"id": "lint", "agent": "echo", "after": ["plan"]},
        {"id": "ship", "agent": "echo", "after": ["build", "lint"]},
    ],
}


def test_one_trace_per_run_across_workers_with_the_dags_shape(
    settings: Settings, worker_factory: WorkerFactory, otlp: OtlpReceiver, tmp_path: Path
) -> None:
    env = otel_env(otlp)
    first = worker_factory(["emit", "sleep"], extra_env=env)
    second = worker_factory(["echo"], extra_env=env)
    path = tmp_path / "diamond.json"
    path.write_text(json.dumps(DIAMOND))
    result = run_cli(
        ["dag", "submit", str(path), "--wait", "--json"], {**settings.environment(), **env, "PYTHONPATH": str(ROOT)}
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert {n["worker"] for n in doc["nodes"].values()} == {first.hostname, second.hostname}

    def node_spans() -> dict[str, Any]:
        return {s.attributes["coditect.node_id"]: s for s in otlp.snapshot() if "coditect.node_id" in s.attributes}

    wait_for(
        lambda: len(node_spans()) == 4 and any(s.name == "dag.run diamond" for s in otlp.snapshot()),
        20,
        "the root span and four node spans",
    )
    root = next(s for s in otlp.snapshot() if s.name == "dag.run diamond")
    spans = node_spans()
    assert root.parent_id == "" and root.attributes["coditect.run_id"] == doc["run_id"]
    assert {s.trace_id for s in spans.values()} == {root.trace_id}
    assert spans["plan"].parent_id == root.span_id
    assert spans["build"].parent_id == spans["plan"].span_id
    assert spans["lint"].parent_id == spans["plan"].span_id
    # ship hangs under whichever predecessor let it start (the slower build), linked to both
    assert spans["ship"].parent_id == spans["build"].span_id
    assert set(spans["ship"].links) == {spans["build"].span_id, spans["lint"].span_id}
    assert {s.service for s in spans.values()} == {"coditect-worker"}
    # Celery's own task spans (opentelemetry-instrumentation-celery) join the same trace
    celery_runs = [s for s in otlp.snapshot() if s.name.startswith("run/agents.")]
    assert celery_runs and {s.trace_id for s in celery_runs} == {root.trace_id}


def test_worker_log_lines_are_json_and_carry_the_ids(
    app: CoditectApp, settings: Settings, worker_factory: WorkerFactory, otlp: OtlpReceiver, tmp_path: Path
) -> None:
    worker = worker_factory(["flaky"], extra_env={**otel_env(otlp), "CODITECT_LOG_LEVEL": "INFO"})
    dag = Dag("logged")
    dag.node("wobbly", "flaky", params={"fail_times": 1}, retries=2)
    run = submit(dag, app)
    assert run.wait(30) == "succeeded"
    assert worker.log_path is not None
    wait_for(
        lambda: sum('"node_id": "wobbly"' in line for line in worker.log_path.read_text().splitlines()) >= 2,
        10,
        "log lines of both attempts",
    )
    lines = [json.loads(line) for line in worker.log_path.read_text().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("run_id") == run.id]
    assert mine, "no log line carries the run id"
    for line in mine:
        assert line["node_id"] == "wobbly" and line["agent"] == "flaky", line
        assert {"attempt", "task_id", "trace_id", "level", "timestamp", "event"} <= line.keys(), line
        assert len(line["trace_id"]) == 32
    assert {line["attempt"] for line in mine} == {1, 2}
    assert len({line["trace_id"] for line in mine}) == 1


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name → {sorted labels: value} from a live /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


@pytest.fixture
def exporter(settings: Settings) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "coditect_tasks", "exporter", "--port", str(port)],
        env={**os.environ, **settings.environment(), "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: _answers(port), 20, "the exporter to listen")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _answers(port: int, path: str = "/metrics", auth: str | None = None) -> bool:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def test_metrics_reflect_a_run(app: CoditectApp, worker_factory: WorkerFactory, exporter: int) -> None:
    worker_factory(["flaky", "echo"])
    dag = Dag("measured")
    dag.node("wobbly", "flaky", params={"fail_times": 1}, retries=2)
    dag.node("after", "echo", after=["wobbly"])
    dag.node("stuck", "sleep", params={"seconds": 0})  # no worker serves sleep: it stays queued
    run = submit(dag, app)
    wait_for(lambda: run.status()["nodes"]["after"]["status"] == "succeeded", 30, "the served branch to finish")
    metrics = scrape(exporter)
    agent = (("agent", "flaky"),)
    assert metrics["coditect_runs_submitted_total"][()] == 1
    assert metrics["coditect_runs_running"][()] == 1
    assert metrics["coditect_node_attempts_total"][agent] == 2
    assert metrics["coditect_node_outcomes_total"][(("agent", "flaky"), ("outcome", "retried"))] == 1
    assert metrics["coditect_node_outcomes_total"][(("agent", "flaky"), ("outcome", "succeeded"))] == 1
    assert metrics["coditect_node_duration_seconds_count"][agent] == 2
    assert metrics["coditect_node_duration_seconds_bucket"][(("agent", "flaky"), ("le", "+Inf"))] == 2
    assert metrics["coditect_queue_depth"][(("agent", "sleep"),)] == 1
    assert metrics["coditect_workers"][(("agent", "sleep"),)] == 0
    assert metrics["coditect_workers"][(("agent", "echo"),)] == 1
    assert metrics["coditect_breaker_state"][(("agent", "flaky"), ("state", "closed"))] == 1
    run.cancel()
    metrics = scrape(exporter)
    assert metrics["coditect_runs_finished_total"][(("status", "cancelled"),)] == 1
    assert metrics["coditect_runs_running"][()] == 0
    quick = Dag("quick")
    quick.node("hello", "echo")
    assert submit(quick, app).wait(30) == "succeeded"
    metrics = scrape(exporter)
    assert metrics["coditect_runs_finished_total"][(("status", "succeeded"),)] == 1
    assert metrics["coditect_run_duration_seconds_count"][()] == 1
    assert 0 < metrics["coditect_run_duration_seconds_sum"][()] < 30


FLOWER_AUTH = "ops:s3cret-pass"


@pytest.fixture
def flower(settings: Settings, tmp_path: Path) -> Iterator[int]:
    port = free_port()
    log = (tmp_path / "flower.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "coditect_tasks", "flower", "--port", str(port)],
        env={
            **os.environ,
            **settings.environment(),
            "PYTHONPATH": str(ROOT),
            "CODITECT_FLOWER_BASIC_AUTH": FLOWER_AUTH,
        },
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: _answers(port, "/healthcheck"), 30, "Flower to listen")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _get(port: int, path: str, auth: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_flower_requires_auth_and_shows_workers_and_node_tasks(
    app: CoditectApp, worker_factory: WorkerFactory, flower: int
) -> None:
    worker = worker_factory(["echo"], events=True)
    assert _get(flower, "/")[0] == 401
    assert _get(flower, "/api/workers")[0] == 401
    assert _get(flower, "/api/workers", "ops:wrong")[0] == 401

    def workers() -> dict[str, Any]:
        status, body = _get(flower, "/api/workers?refresh=1", FLOWER_AUTH)
        return json.loads(body) if status == 200 else {}

    wait_for(lambda: worker.hostname in workers(), 30, "Flower to list the worker")
    dag = Dag("watched")
    dag.node("look", "echo")
    run = submit(dag, app)
    assert run.wait(30) == "succeeded"

    def node_tasks() -> list[dict[str, Any]]:
        status, body = _get(flower, "/api/tasks", FLOWER_AUTH)
        tasks = json.loads(body).values() if status == 200 else []
        return [t for t in tasks if run.id in str(t.get("kwargs"))]

    wait_for(node_tasks, 30, "Flower to show the node's task")
    task = node_tasks()[0]
    assert task["name"] == "agents.echo"
    assert "'node_id': 'look'" in task["kwargs"]


def test_flower_will_not_start_without_credentials(settings: Settings) -> None:
    started = time.monotonic()
    result = run_cli(["flower", "--port", str(free_port())], settings.environment())
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "coditect-tasks: error: CODITECT_FLOWER_BASIC_AUTH: not set; Flower will not start without authentication "
        "(set it to user:password)"
    ]
    assert time.monotonic() - started < 15


MONITORING = ROOT / "monitoring"
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}


def promql_metrics(expr: str) -> set[str]:
    """The metric names an expression reads (not its functions, labels, strings or ranges)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end() :].lstrip().startswith("(") or match.group().lower() in PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


def test_promql_metrics_reads_names_only() -> None:
    assert promql_metrics(
        'histogram_quantile(0.95, sum by (agent, le) (rate(x_bucket{outcome=~"a|b"}[5m]))) / y > 0.1 and on(agent) z'
    ) == {"x_bucket", "y", "z"}


def exposed(port: int, auth: str | None = None) -> set[str]:
    """Every series name a live /metrics serves, including families that have no sample yet."""
    status, body = _get(port, "/metrics", auth)
    assert status == 200
    names = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for family in text_string_to_metric_families(body.decode()):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def dashboard_queries() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted((MONITORING / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        found[path.name] = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    return found


def test_dashboards_and_alerts_query_only_metrics_that_exist(exporter: int, flower: int) -> None:
    available = exposed(exporter) | exposed(flower, FLOWER_AUTH)
    assert {"coditect_node_duration_seconds_bucket", "flower_task_runtime_seconds_bucket"} <= available
    queries = dashboard_queries()
    assert set(queries) == {"system-overview.json", "agent-performance.json", "dag-runs.json"}
    rules = yaml.safe_load((MONITORING / "prometheus" / "alerts.yml").read_text())
    queries["alerts.yml"] = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    for source, exprs in queries.items():
        assert exprs, f"{source} has no queries"
        for expr in exprs:
            used = promql_metrics(expr)
            assert used, f"{source}: {expr!r} reads no metric"
            assert used <= available, f"{source}: {expr!r} reads {sorted(used - available)}, which nothing exports"


def test_prometheus_config_and_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool") or missing("promtool not installed (apt-get install prometheus)")
    config = subprocess.run(
        [promtool, "check", "config", str(MONITORING / "prometheus" / "prometheus.yml")], capture_output=True, text=True
    )
    assert config.returncode == 0, config.stdout + config.stderr
    rules = subprocess.run(
        [promtool, "check", "rules", str(MONITORING / "prometheus" / "alerts.yml")], capture_output=True, text=True
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 10 rules found" in rules.stdout


ALERTMANAGER = MONITORING / "alertmanager"
#: What compose/.env gives the ALERT_* variables in the test: characters a shell or sed would mangle.
ALERT_ENV = {
    "ALERT_WEBHOOK_URL": "https://hooks.example.com/alerts?a=1&b=2|c",
    "ALERT_SLACK_URL": "https://hooks.slack.com/services/T000/B000/XXXX",
    "ALERT_SLACK_CHANNEL": "#ops",
    "ALERT_EMAIL_TO": "oncall@example.com",
    "ALERT_EMAIL_FROM": "alertmanager@example.com",
    "ALERT_SMTP_HOST": "smtp.example.com:587",
    "ALERT_SMTP_USER": "alerts",
    "ALERT_SMTP_PASSWORD": "p&ss|w${X}rd\\1",
}


def _render(template: Path) -> str:
    """alertmanager.yml as render.sh fills it in at the container's start (sh and awk, as there)."""
    done = subprocess.run(
        ["sh", str(ALERTMANAGER / "render.sh"), str(template)],
        env={"PATH": os.environ["PATH"], "RENDER_ONLY": "1", **ALERT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.mark.parametrize(
    ("old", "new"),
    [(None, None), ("receiver: slack\n", "receiver: pager\n"), ("group_wait: 30s", "group_wait: soon")],
    ids=["as shipped", "a route to no receiver", "a bad duration"],
)
def test_alertmanager_routes_pass_amtool_with_every_address_from_a_variable(
    old: str | None, new: str | None, tmp_path: Path
) -> None:
    amtool = shutil.which("amtool") or missing("amtool not installed (apt-get install prometheus-alertmanager)")
    template = tmp_path / "alertmanager.yml"
    text = (ALERTMANAGER / "alertmanager.yml").read_text()
    template.write_text(text if old is None else text.replace(old, new or "", 1))
    rendered = tmp_path / "rendered.yml"
    rendered.write_text(_render(template))
    checked = subprocess.run([amtool, "check-config", str(rendered)], capture_output=True, text=True)
    assert (checked.returncode == 0) == (old is None), checked.stdout + checked.stderr
    if old is not None:
        return
    config = yaml.safe_load(rendered.read_text())
    webhook = config["receivers"][0]["webhook_configs"][0]["url"]
    oncall = config["receivers"][2]["email_configs"][0]
    assert (webhook, oncall["auth_password"]) == (ALERT_ENV["ALERT_WEBHOOK_URL"], ALERT_ENV["ALERT_SMTP_PASSWORD"])
    # none literal: every address and secret of every receiver is a variable of compose/.env
    shipped = yaml.safe_load(text)
    fields = [
        value
        for receiver in shipped["receivers"]
        for kind, configs in receiver.items()
        if kind != "name"
        for conf in configs
        for key, value in conf.items()
        if key != "send_resolved"
    ]
    assert fields and all(re.fullmatch(r"\$\{ALERT_[A-Z_]+\}", v) for v in fields), fields
    compose = yaml.safe_load((ROOT / "compose" / "compose.yaml").read_text())
    named = set(re.findall(r"\$\{(ALERT_[A-Z_]+)\}", text))
    assert named == set(compose["services"]["alertmanager"]["environment"]) == set(ALERT_ENV)
    example = (ROOT / "compose" / ".env.example").read_text()
    assert all(f"\n{name}=" in example for name in named)
    severities = set(re.findall(r"severity: (\w+)", (MONITORING / "prometheus" / "alerts.yml").read_text()))
    routed = {m.split('"')[1] for r in shipped["route"]["routes"] for m in r["matchers"] if "=~" not in m}
    assert severities <= routed, f"alerts of severity {severities - routed} reach no person"
    prometheus = yaml.safe_load((ROOT / "compose" / "prometheus.yml").read_text())
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_the_collector_forwards_traces_to_jaeger() -> None:
    config = yaml.safe_load((MONITORING / "otel" / "collector.yaml").read_text())
    pipeline = config["service"]["pipelines"]["traces"]
    assert set(pipeline["receivers"]) <= set(config["receivers"])
    assert set(pipeline["processors"]) <= set(config["processors"])
    assert set(pipeline["exporters"]) <= set(config["exporters"])
    assert [config["exporters"][name]["endpoint"] for name in pipeline["exporters"]] == ["jaeger:4317"]
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
