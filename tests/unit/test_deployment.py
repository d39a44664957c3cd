"""Offline validation of Dockerfile, compose/ and k8s/ (no Docker engine or cluster here): real validators
(check-jsonschema with the Compose Specification, kubernetes-validate, yamllint) and rules of ours, each shown
to reject a broken copy, so a check that silently stopped checking fails its own test."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose" / "compose.yaml"
K8S = ROOT / "k8s"
BIN = Path(sys.executable).parent  # the validators' console scripts live beside this interpreter
KUBERNETES = "1.37.0"  # the newest schemas kubernetes-validate 1.37 bundles
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|AUTH", re.IGNORECASE)
REQUIRED_REF = re.compile(r"\$\{\w+:?\?[^}]*\}")  # ${VAR:?} / ${VAR?}: set or compose refuses, no default
URL_PASSWORD = re.compile(r"://[^:/@\s]*:([^@\s]*)@")
Doc = dict[str, Any]


def _run(tool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120)


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, f"{old!r} is gone: update this test's broken copy"  # a stale edit would prove nothing
    return text.replace(old, new, 1)


def _broken(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    path = tmp_path / source.name
    path.write_text(_edit(source.read_text(), old, new))
    return path


def _agents(args: list[str]) -> set[str]:
    return set(args[args.index("--agents") + 1].split(","))


def _seconds(duration: str) -> float:
    """A compose duration ("45s", "1m30s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(h|ms|m|s)", duration))


def _compose() -> Doc:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]  # resolves << merges, as Compose does


@pytest.mark.parametrize(
    ("old", "new"),
    [(None, None), ("condition: service_healthy", "condition: service_helthy"), ("    user: redis", "    usr: redis")],
    ids=["as shipped", "misspelt depends_on condition", "unknown service key"],
)
def test_compose_file_matches_the_compose_specification(tmp_path: Path, old: str | None, new: str) -> None:
    path = COMPOSE if old is None else _broken(tmp_path, COMPOSE, old, new)
    result = _run("check-jsonschema", "--builtin-schema", "vendor.compose-spec", path)
    assert (result.returncode == 0) == (old is None), result.stdout + result.stderr


def _compose_problems(doc: Doc, raw: str) -> list[str]:
    services: dict[str, Doc] = doc["services"]
    workers = {name: s for name, s in services.items() if s.get("command", [""])[0] == "worker"}
    problems = [] if len(workers) >= 2 else [f"two or more worker pools expected, found {sorted(workers)}"]
    agent_sets = [frozenset(_agents(s["command"])) for s in workers.values()]
    if len(set(agent_sets)) != len(agent_sets):
        problems.append("two worker pools serve the same agents")
    for name, service in workers.items():
        grace = int(service.get("environment", {}).get("CODITECT_SHUTDOWN_GRACE", 30))
        depends = service.get("depends_on")
        if not isinstance(depends, dict) or depends.get("redis", {}).get("condition") != "service_healthy":
            problems.append(f"{name}: does not wait for a healthy redis")
        if "health" not in service.get("healthcheck", {}).get("test", []):
            problems.append(f"{name}: no `coditect-tasks health` healthcheck")
        if _seconds(service.get("stop_grace_period", "10s")) <= grace:
            problems.append(f"{name}: stop_grace_period is not longer than CODITECT_SHUTDOWN_GRACE={grace}")
    for name, service in services.items():
        for port in service.get("ports", []):
            if not (port.get("host_ip") == "127.0.0.1" if isinstance(port, dict) else port.startswith("127.0.0.1:")):
                problems.append(f"{name}: port {port} is published beyond 127.0.0.1")
    redis = " ".join(services["redis"]["command"])
    if "--appendonly yes" not in redis or "--maxmemory-policy noeviction" not in redis:
        problems.append("redis: AOF and noeviction must be on (workers refuse an evicting Redis)")
    if "redis-cli ping" not in " ".join(services["redis"].get("healthcheck", {}).get("test", [])):
        problems.append("redis: no redis-cli ping healthcheck")
    if not re.search(r"^x-[\w-]+:\s*&[\w-]+", raw, re.MULTILINE):
        problems.append("no x- extension with an anchor for what the coditect services share")
    return problems


def _set(doc: Doc, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        doc = doc[key]
    if value is None:
        del doc[last]
    else:
        doc[last] = value


COMPOSE_BREAKS: dict[str, tuple[str, Any]] = {
    "short stop_grace_period": ("services.worker-slow.stop_grace_period", "30s"),
    "no depends_on": ("services.worker-fast.depends_on", None),
    "redis merely started": ("services.worker-fast.depends_on", {"redis": {"condition": "service_started"}}),
    "no healthcheck": ("services.worker-slow.healthcheck", None),
    "port on every interface": ("services.flower.ports", ["5555:5555"]),
    "evicting redis": ("services.redis.command", ["redis-server", "--appendonly", "yes"]),
    "one pool": ("services.worker-slow", None),
}


@pytest.mark.parametrize("broken", [None, *COMPOSE_BREAKS, "no anchor"])
def test_compose_workers_wait_for_redis_check_health_outlast_the_grace_and_ports_stay_local(broken: str | None) -> None:
    doc, raw = _compose(), COMPOSE.read_text()
    if broken == "no anchor":
        raw = raw.replace("&", "")
    elif broken:
        _set(doc, *COMPOSE_BREAKS[broken])
    assert bool(_compose_problems(doc, raw)) == bool(broken), _compose_problems(doc, raw)


def _mounts(service: Doc) -> dict[str, str]:
    return {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}


def test_compose_prometheus_and_grafana_mount_what_their_configs_name() -> None:
    services = _compose()["services"]
    scrape = yaml.safe_load((ROOT / "compose" / "prometheus.yml").read_text())
    assert _mounts(services["prometheus"])[scrape["rule_files"][0]] == "../monitoring/prometheus/alerts.yml"
    targets = {t for job in scrape["scrape_configs"] for group in job["static_configs"] for t in group["targets"]}
    assert targets == {"exporter:9808", "flower:5555"}
    auth = next(job["basic_auth"] for job in scrape["scrape_configs"] if job["job_name"] == "flower")
    assert {f"/run/secrets/{s}" for s in services["prometheus"]["secrets"]} == set(auth.values())
    grafana = _mounts(services["grafana"])
    provider = yaml.safe_load((ROOT / "monitoring/grafana/provisioning/dashboards/coditect.yaml").read_text())
    assert grafana[provider["providers"][0]["options"]["path"]] == "../monitoring/grafana/dashboards"
    assert grafana["/etc/grafana/provisioning"] == "../monitoring/grafana/provisioning"


def test_compose_sends_every_processs_traces_through_the_collector_to_jaeger_and_grafana() -> None:
    services = _compose()["services"]
    coditect = [name for name, s in services.items() if "CODITECT_BROKER_URL" in s.get("environment", {})]
    endpoint = "http://otel-collector:4318"  # the collector's OTLP/HTTP receiver
    assert coditect and all(services[n]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint for n in coditect)
    collector = services["otel-collector"]
    config = collector["command"][0].removeprefix("--config=")
    assert _mounts(collector)[config] == "../monitoring/otel/collector.yaml"
    forwarded = yaml.safe_load((ROOT / "monitoring/otel/collector.yaml").read_text())
    assert forwarded["exporters"]["otlp/jaeger"]["endpoint"].split(":")[0] in services
    sources = yaml.safe_load((ROOT / "monitoring/grafana/provisioning/datasources/jaeger.yaml").read_text())
    jaeger = next(s for s in sources["datasources"] if s["type"] == "jaeger")
    assert jaeger["url"] == "http://jaeger:16686" and "127.0.0.1:16686:16686" in services["jaeger"]["ports"]


def test_compose_sends_every_processs_log_lines_to_loki_linked_both_ways_with_their_traces() -> None:
    services = _compose()["services"]
    coditect = [name for name, s in services.items() if "CODITECT_BROKER_URL" in s.get("environment", {})]
    assert all(services[n]["environment"]["OTEL_LOGS_EXPORTER"] == "otlp" for n in coditect)
    collector = yaml.safe_load((ROOT / "monitoring/otel/collector.yaml").read_text())
    exporter = collector["service"]["pipelines"]["logs"]["exporters"][0]
    assert collector["exporters"][exporter]["endpoint"] == "http://loki:3100/otlp"  # Loki's own OTLP ingestion
    loki = services["loki"]
    assert _mounts(loki)[loki["command"][0].removeprefix("-config.file=")] == "../monitoring/loki/loki.yaml"
    assert "127.0.0.1:3100:3100" in loki["ports"]
    config = yaml.safe_load((ROOT / "monitoring/loki/loki.yaml").read_text())
    assert config["limits_config"]["allow_structured_metadata"]  # what OTLP ingestion needs
    assert {c["schema"] for c in config["schema_config"]["configs"]} == {"v13"}
    folder = ROOT / "monitoring/grafana/provisioning/datasources"
    sources = {s["type"]: s for f in folder.glob("*.yaml") for s in yaml.safe_load(f.read_text())["datasources"]}
    # a log line's trace_id opens its trace: the regex finds it in a line as the processes write it
    field = sources["loki"]["jsonData"]["derivedFields"][0]
    assert field["datasourceUid"] == sources["jaeger"]["uid"] and field["url"] == "$${__value.raw}"
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    line = structlog.processors.JSONRenderer()(None, "info", {"event": "node began", "trace_id": trace_id})
    found = re.search(field["matcherRegex"], str(line))
    assert found is not None and found.group(1) == trace_id
    # and a span opens the lines of its trace
    links = sources["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert links["datasourceUid"] == sources["loki"]["uid"] and links["filterByTraceID"] is True


def _manifests(directory: Path = K8S) -> list[Path]:
    return sorted(p for p in directory.glob("*.yaml") if p.name != "kustomization.yaml")


def _objects() -> list[Doc]:
    return [doc for path in _manifests() for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kube_problems(paths: list[Path]) -> list[str]:
    result = _run("kubernetes-validate", "--strict", "--quiet", "-k", KUBERNETES, *paths)
    lines = (result.stdout + result.stderr).splitlines()
    # A kind it has no schema for only warns (exit 0): only KEDA's CRD may be unknown, so a misspelt kind fails.
    problems = [line for line in lines if line.startswith(("ERROR", "WARN")) and "keda.sh/v1alpha1" not in line]
    return problems or ([] if result.returncode == 0 else [f"exit {result.returncode}: {lines}"])


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (None, None),
        ("          args: [", "          argz: ["),
        ("kind: PodDisruptionBudget", "kind: PodDisruptionBudgit"),
    ],
    ids=["as shipped", "unknown container field", "unknown kind"],
)
def test_kubernetes_manifests_validate_strictly(tmp_path: Path, old: str | None, new: str) -> None:
    broken = [] if old is None else [_broken(tmp_path, K8S / "worker-fast.yaml", old, new)]
    problems = _kube_problems([p for p in _manifests() if not broken or p.name != "worker-fast.yaml"] + broken)
    assert bool(problems) == (old is not None), problems


def _pod(doc: Doc | None) -> Doc:
    return (doc or {}).get("spec", {}).get("template", {}).get("spec", {})  # type: ignore[no-any-return]


def _keda_problems(objects: list[Doc]) -> list[str]:
    grace = int(next(o for o in objects if o["kind"] == "ConfigMap")["data"].get("CODITECT_SHUTDOWN_GRACE", 30))
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    pools = {name for name, d in deployments.items() if _pod(d)["containers"][0]["args"][0] == "worker"}
    scaled = [o for o in objects if o["kind"] == "ScaledObject"]
    problems, targets = [], set()
    for so in scaled:
        name, spec = so["metadata"]["name"], so["spec"]
        target = spec.get("scaleTargetRef", {}).get("name")
        targets.add(target)
        if so["apiVersion"] != "keda.sh/v1alpha1":
            problems.append(f"{name}: apiVersion {so['apiVersion']}")
        if target not in pools:
            problems.append(f"{name}: scaleTargetRef {target!r} is no worker Deployment in the base")
            continue
        if spec.get("minReplicaCount") != 0 or spec.get("maxReplicaCount", 0) < 1 or "pollingInterval" not in spec:
            problems.append(f"{name}: needs minReplicaCount 0, a maxReplicaCount and a pollingInterval")
        termination = _pod(deployments[target]).get("terminationGracePeriodSeconds", 30)
        if not spec.get("cooldownPeriod", 0) > termination > grace:
            problems.append(f"{name}: cooldownPeriod > terminationGracePeriodSeconds > grace={grace} does not hold")
        triggers = spec.get("triggers", [])
        if [t.get("type") for t in triggers] != ["prometheus"]:
            problems.append(f"{name}: one prometheus trigger expected, not {triggers}")
            continue
        meta = triggers[0].get("metadata", {})
        if missing := {"serverAddress", "query", "threshold"} - meta.keys():
            problems.append(f"{name}: trigger lacks {sorted(missing)}")
        query, served = meta.get("query", ""), _agents(_pod(deployments[target])["containers"][0]["args"])
        if "coditect_agent_demand" not in query or "coditect_agent_upcoming" not in query:
            problems.append(f"{name}: the query must read demand + upcoming: {query}")
        selected = [set(agents.split("|")) for agents in re.findall(r'agent=~"([^"]*)"', query)]
        if not selected or any(s != served for s in selected):
            problems.append(f"{name}: the query selects {selected}, the pool serves {served}")
    problems += [f"worker pool {p} has no ScaledObject" for p in sorted(pools - targets)]
    return problems


def _first(objects: list[Doc], kind: str) -> Doc:
    return next(o for o in objects if o["kind"] == kind)


def _trigger(objects: list[Doc]) -> Doc:
    return _first(objects, "ScaledObject")["spec"]["triggers"][0]  # type: ignore[no-any-return]


KEDA_BREAKS: dict[str, Callable[[list[Doc]], object]] = {
    "target missing": lambda o: _first(o, "ScaledObject")["spec"]["scaleTargetRef"].update(name="worker-gone"),
    "pool unscaled": lambda o: o.remove(_first(o, "ScaledObject")),
    "no scale to zero": lambda o: _first(o, "ScaledObject")["spec"].update(minReplicaCount=1),
    "cooldown within the pod's grace": lambda o: _first(o, "ScaledObject")["spec"].update(cooldownPeriod=45),
    "grace above the pod's": lambda o: _first(o, "ConfigMap")["data"].update(CODITECT_SHUTDOWN_GRACE="90"),
    "list length trigger": lambda o: _trigger(o).update(type="redis", metadata={"listName": "agents.echo"}),
    "query misses an agent": lambda o: _trigger(o)["metadata"].update(
        query='sum(coditect_agent_demand{agent=~"echo|emit"}) + sum(coditect_agent_upcoming{agent=~"echo|emit"})'
    ),
    "demand only": lambda o: _trigger(o)["metadata"].update(query='sum(coditect_agent_demand{agent=~"echo"})'),
    "no threshold": lambda o: _trigger(o)["metadata"].pop("threshold"),
}


@pytest.mark.parametrize("broken", [None, *KEDA_BREAKS])
def test_each_worker_pool_scales_on_demand_plus_upcoming_of_exactly_its_agents(broken: str | None) -> None:
    objects = copy.deepcopy(_objects())
    assert sum(o["kind"] == "ScaledObject" for o in objects) >= 2
    if broken:
        KEDA_BREAKS[broken](objects)
    problems = _keda_problems(objects)
    assert bool(problems) == bool(broken), problems


def _kustomize_problems(directory: Path) -> list[str]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    problems = [f"{r} is listed but missing" for r in listed if not (directory / r).is_file()]
    problems += [f"{p.name} is not listed" for p in _manifests(directory) if p.name not in listed]
    renamed = {image["name"] for image in kustomization.get("images", [])}
    for path in _manifests(directory):
        for doc in yaml.safe_load_all(path.read_text()):
            for container in _pod(doc).get("containers", []):
                if ":" not in container["image"] and container["image"] not in renamed:
                    problems.append(f"{path.name}: image {container['image']} has no tag and no images: entry")
    return problems


@pytest.mark.parametrize("broken", [None, "unlisted", "missing", "image not renamed"])
def test_kustomization_lists_every_manifest_and_tags_the_image(tmp_path: Path, broken: str | None) -> None:
    directory = K8S if broken is None else Path(shutil.copytree(K8S, tmp_path / "k8s"))
    if broken == "unlisted":
        (directory / "extra.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n")
    elif broken == "missing":
        (directory / "flower.yaml").unlink()
    elif broken:
        _broken(directory, K8S / "kustomization.yaml", "- name: coditect-tasks", "- name: coditect")
    problems = _kustomize_problems(directory)
    assert bool(problems) == bool(broken), problems


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (None, None),
        ("  CODITECT_LOG_LEVEL: INFO\n", "  CODITECT_LOG_LEVEL: INFO\n  CODITECT_LOG_LEVEL: DEBUG\n"),
        ("  name: coditect-config\n", "     name: coditect-config\n"),
    ],
    ids=["as shipped", "duplicate key", "bad indentation"],
)
def test_yaml_lint_strict(tmp_path: Path, old: str | None, new: str) -> None:
    targets: list[str | Path] = ["compose", "k8s", "monitoring", ".yamllint.yaml"]
    if old is not None:
        targets = [_broken(tmp_path, K8S / "config.yaml", old, new)]
    result = _run("yamllint", "-s", "-c", ROOT / ".yamllint.yaml", *targets)
    assert (result.returncode == 0) == (old is None), result.stdout + result.stderr


def _literal_secret(value: str) -> bool:
    """True unless the value is only required ${VAR:?} references (":" may join them, as in user:password)."""
    return bool(re.search(r"[^:\s]", REQUIRED_REF.sub("", value)))


def _compose_secret_problems(node: Any, where: str = "") -> list[str]:
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = [tuple(s.split("=", 1)) if isinstance(s, str) and "=" in s else (str(i), s) for i, s in enumerate(node)]
    else:
        return []
    problems = []
    for key, value in items:
        if isinstance(value, str):
            url = URL_PASSWORD.search(value)
            if (SECRETISH.search(str(key)) and _literal_secret(value)) or (url and _literal_secret(url[1])):
                problems.append(f"{where}.{key}: {value!r} is not a required ${{VAR:?}} reference")
        problems += _compose_secret_problems(value, f"{where}.{key}")
    return problems


def _k8s_secret_problems(objects: list[Doc]) -> list[str]:
    problems = [f"Secret {o['metadata']['name']} ships its values" for o in objects if o["kind"] == "Secret"]
    for o in objects:
        for container in _pod(o).get("containers", []):
            for env in container.get("env", []):
                url = URL_PASSWORD.search(env.get("value", ""))
                if (SECRETISH.search(env["name"]) and "value" in env) or (url and not url[1].startswith("$(")):
                    problems.append(f"{o['metadata']['name']}: {env['name']} has a literal secret")
    return problems


COMPOSE_LEAKS = {
    "literal password": ("services.redis.environment.REDIS_PASSWORD", "hunter2"),
    "password with a default": ("services.postgres.environment.POSTGRES_PASSWORD", "${POSTGRES_PASSWORD:-changeme}"),
    "optional password": ("services.grafana.environment.GF_SECURITY_ADMIN_PASSWORD", "${GRAFANA_ADMIN_PASSWORD}"),
    "literal in a URL": ("services.worker-fast.environment.CODITECT_BROKER_URL", "redis://:hunter2@redis:6379/0"),
    "literal user:password": ("services.flower.environment.CODITECT_FLOWER_BASIC_AUTH", "admin:${FLOWER_PASSWORD:?}"),
}


@pytest.mark.parametrize("broken", [None, *COMPOSE_LEAKS])
def test_compose_has_no_literal_secrets(broken: str | None) -> None:
    doc = _compose()
    if broken:
        _set(doc, *COMPOSE_LEAKS[broken])
    problems = _compose_secret_problems(doc)
    assert bool(problems) == bool(broken), problems


@pytest.mark.parametrize("broken", [None, "Secret manifest", "literal env", "literal in a URL"])
def test_kubernetes_references_secrets_and_never_inlines_them(broken: str | None) -> None:
    objects = copy.deepcopy(_objects())
    env = _pod(_first(objects, "Deployment"))["containers"][0]["env"]
    if broken == "Secret manifest":
        objects.append({"kind": "Secret", "metadata": {"name": "coditect-secrets"}, "data": {"redis-password": "eA=="}})
    elif broken == "literal env":
        env[0] = {"name": "REDIS_PASSWORD", "value": "hunter2"}
    elif broken == "literal in a URL":
        next(e for e in env if e["name"] == "CODITECT_BROKER_URL")["value"] = "redis://:hunter2@redis:6379/0"
    problems = _k8s_secret_problems(objects)
    assert bool(problems) == bool(broken), problems


def _dockerfile_problems(text: str) -> list[str]:
    lines = [line.strip() for line in re.sub(r"\\\n", " ", text).splitlines()]
    steps = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines if line and line[0] != "#"]
    problems = []
    for image in (args.split()[0] for op, args in steps if op == "FROM"):
        version = re.fullmatch(r"python:3\.(\d+)(?:\.\d+)?-slim(?:-\w+)?(?:@sha256:\w+)?", image)
        if not version or int(version[1]) < 11:
            problems.append(f"FROM {image}: not a Python 3.11+ slim image")
    users = [args.split(":")[0] for op, args in steps if op == "USER"]
    if not users or not users[-1].isdigit() or users[-1] == "0":  # numeric, so runAsNonRoot can verify it
        problems.append(f"the image runs as {users[-1] if users else 'root'}, not a numeric non-root UID")
    entrypoints = [args for op, args in steps if op == "ENTRYPOINT"]
    if not entrypoints or not re.fullmatch(r'\[\s*"coditect-tasks"\s*\]', entrypoints[-1]):
        problems.append('ENTRYPOINT is not exactly ["coditect-tasks"] in exec form')
    installs = [args for op, args in steps if op == "RUN" and "pip install" in args]
    if not any(re.search(r"\.\[postgres\]", a) for a in installs) or any(re.search(r"\[[^]]*dev", a) for a in installs):
        problems.append("the project must be installed with the postgres extra and without dev")
    checks = [args for op, args in steps if op == "HEALTHCHECK"]
    if not checks or not re.search(r'CMD \[\s*"coditect-tasks",\s*"health"\s*\]$', checks[-1]):
        problems.append('no HEALTHCHECK running ["coditect-tasks", "health"] in exec form')
    if not any(op == "ENV" and "CODITECT_HEALTH_FILE=/tmp/" in args for op, args in steps):
        problems.append("CODITECT_HEALTH_FILE is not set to a file under /tmp (writable under a read-only root)")
    if any(op in ("ENV", "ARG") and SECRETISH.search(args) for op, args in steps):
        problems.append("a secret is baked into the image")
    return problems


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (None, None),
        ("FROM python:3.11-slim AS build", "FROM python:3.10-slim AS build"),
        ("FROM python:3.11-slim\n", "FROM python:3.11\n"),
        ("USER 10001:10001", "USER root"),
        ("USER 10001:10001", "USER coditect"),
        ('ENTRYPOINT ["coditect-tasks"]', "ENTRYPOINT coditect-tasks"),
        ("'.[postgres]'", "'.[postgres,dev]'"),
        ("CODITECT_HOME=/var/lib/coditect", "CODITECT_HOME=/var/lib/coditect REDIS_PASSWORD=x"),
        ('CMD ["coditect-tasks", "health"]', "CMD coditect-tasks health"),
        ("HEALTHCHECK --interval", "# HEALTHCHECK --interval"),
        ("CODITECT_HEALTH_FILE=/tmp/coditect-health.json", "CODITECT_HEALTH_FILE=/var/lib/health.json"),
    ],
)
def test_dockerfile_builds_a_slim_non_root_image_with_the_cli_as_entrypoint(old: str | None, new: str) -> None:
    text = (ROOT / "Dockerfile").read_text()
    problems = _dockerfile_problems(text if old is None else _edit(text, old, new))
    assert bool(problems) == (old is not None), problems


def _dockerignore_problems(text: str) -> list[str]:
    entries = {line.strip().rstrip("/") for line in text.splitlines() if line.strip() and line[0] != "#"}
    needed = {".venv": {".venv"}, ".coditect": {".coditect"}, ".git": {".git"}, "__pycache__": {"**/__pycache__"}}
    return [f"{name} is not excluded" for name, forms in needed.items() if not entries & forms]


@pytest.mark.parametrize("dropped", [None, ".coditect", ".git", "**/__pycache__"])
def test_dockerignore_keeps_local_state_and_caches_out(dropped: str | None) -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    problems = _dockerignore_problems("\n".join(line for line in lines if line != dropped))
    assert bool(problems) == bool(dropped), problems


SENTINEL_COMPOSE = ROOT / "compose" / "compose.sentinel.yaml"


def _sentinel_problems(base: Doc, override: Doc) -> list[str]:
    """What the Sentinel variant must keep: every coditect-tasks service of compose.yaml reaches Redis
    through the Sentinels and waits for them; three Sentinels watch compose.yaml's redis with a
    quorum of two; two replicas follow it (one is left after a failover)."""
    services: dict[str, Doc] = override["services"]
    problems = []
    for name, service in base["services"].items():
        if "CODITECT_BROKER_URL" not in service.get("environment", {}):
            continue
        env = services.get(name, {}).get("environment", {})
        if not str(env.get("CODITECT_BROKER_URL", "")).startswith("redis+sentinel://"):
            problems.append(f"{name}: not pointed at the Sentinels")
        if {"sentinel-1", "sentinel-2", "sentinel-3"} - set(services.get(name, {}).get("depends_on", {})):
            problems.append(f"{name}: does not wait for the Sentinels")
    commands = {name: " ".join(s.get("command", [])) for name, s in services.items()}
    sentinels = [name for name, command in commands.items() if "exec redis-sentinel" in command]
    if len(sentinels) != 3:
        problems.append(f"three Sentinels expected, found {sorted(sentinels)}")
    problems += [
        f"{n}: does not watch redis with a quorum of 2"
        for n in sentinels
        if "sentinel monitor coditect redis 6379 2" not in commands[n]
    ]
    replicas = [name for name, command in commands.items() if "replicaof redis 6379" in command]
    if len(replicas) < 2:
        problems.append(f"two replicas expected, found {sorted(replicas)}")
    problems += [
        f"{n}: cannot follow a new primary (no masterauth)"
        for n in ["redis", *replicas]
        if "masterauth" not in commands.get(n, "")
    ]
    return problems + _compose_secret_problems(override)


SENTINEL_BREAKS: dict[str, tuple[str, Any]] = {
    "a service left on the single Redis": ("services.recorder", None),
    "two Sentinels": ("services.sentinel-3", None),
    "one replica": ("services.redis-replica-2", None),
    "first primary cannot rejoin": ("services.redis", None),
    "literal password": ("services.worker-fast.environment.CODITECT_BROKER_URL", "redis+sentinel://:hunter2@s:26379/x"),
}


@pytest.mark.parametrize("broken", [None, *SENTINEL_BREAKS])
def test_the_sentinel_variant_points_every_service_at_three_sentinels(broken: str | None) -> None:
    override = yaml.safe_load(SENTINEL_COMPOSE.read_text())
    if broken:
        path, value = SENTINEL_BREAKS[broken]
        if value is not None and path.startswith("services.worker-fast.environment"):
            override["services"]["worker-fast"]["environment"] = dict(
                override["services"]["worker-fast"]["environment"]
            )
        _set(override, path, value)
    problems = _sentinel_problems(_compose(), override)
    assert bool(problems) == bool(broken), problems


@pytest.mark.parametrize(("old", "new"), [(None, None), ("condition: service_healthy", "condition: healthy")])
def test_the_sentinel_variant_matches_the_compose_specification(tmp_path: Path, old: str | None, new: str) -> None:
    path = SENTINEL_COMPOSE if old is None else _broken(tmp_path, SENTINEL_COMPOSE, old, new)
    result = _run("check-jsonschema", "--builtin-schema", "vendor.compose-spec", path)
    assert (result.returncode == 0) == (old is None), result.stdout + result.stderr
