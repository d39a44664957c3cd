"""The metrics and alerts reference: every family the exporter can serve, every alert rule.

The exporter's families are read from the package's source (each
``*MetricFamily(name, help, labels=…)`` call in any module, and ``observability/metrics.py``'s
``_histogram(…, name, help, …)``), because calling the collector needs a live Redis; the alerts
come from ``monitoring/prometheus/alerts.yml``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from coditect_tasks.observability import metrics

from .markdown import code, prose, table

ALERTS = Path(__file__).resolve().parents[3] / "monitoring" / "prometheus" / "alerts.yml"
SUFFIX = {"CounterMetricFamily": "_total", "GaugeMetricFamily": "", "HistogramMetricFamily": ""}


@dataclass(frozen=True)
class MetricDoc:
    name: str  #: as Prometheus exposes it (a counter with ``_total``)
    kind: str
    help: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class AlertDoc:
    name: str
    group: str
    expr: str
    duration: str
    severity: str
    summary: str


def metric_docs(sources: list[str] | None = None) -> list[MetricDoc]:
    """Every metric family the package builds, by name."""
    if sources is None:
        sources = [path.read_text() for path in Path(metrics.__file__).parents[1].rglob("*.py")]
    found = []
    for node in (n for source in sources for n in ast.walk(ast.parse(source))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        strings = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if func in SUFFIX and len(strings) >= 2:
            kind, (name, doc) = func.removesuffix("MetricFamily").lower(), strings[:2]
            found.append(MetricDoc(name + SUFFIX[func], kind, doc, _labels(node)))
        elif func == "_histogram" and len(strings) >= 2:
            labelled = isinstance(node.args[-1], ast.Constant) and node.args[-1].value is True
            found.append(MetricDoc(strings[0], "histogram", strings[1], ("agent",) if labelled else ()))
    return sorted(found, key=lambda m: m.name)


def _labels(call: ast.Call) -> tuple[str, ...]:
    for keyword in call.keywords:
        if keyword.arg == "labels" and isinstance(keyword.value, ast.List):
            return tuple(e.value for e in keyword.value.elts if isinstance(e, ast.Constant))
    return ()


def alert_docs(path: Path = ALERTS) -> list[AlertDoc]:
    """Every alerting rule of the Prometheus rule file."""
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return [
        AlertDoc(
            rule["alert"],
            group["name"],
            " ".join(str(rule["expr"]).split()),
            str(rule.get("for", "0s")),
            str(rule.get("labels", {}).get("severity", "")),
            str(rule.get("annotations", {}).get("summary", "")),
        )
        for group in data["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def render_metrics() -> str:
    rows = [(code(m.name), m.kind, ", ".join(map(code, m.labels)), prose(m.help)) for m in metric_docs()]
    return table(["metric", "type", "labels", "meaning"], rows)


def render_alerts() -> str:
    rows = [(code(a.name), a.severity, code(a.expr), a.duration, code(a.summary)) for a in alert_docs()]
    return table(["alert", "severity", "fires when", "for", "summary"], rows)
