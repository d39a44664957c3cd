"""Read Locust's CSV report back: the figures a load test is judged by."""

from __future__ import annotations

import csv
import html
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import LoadReportError


@dataclass(frozen=True)
class Figures:
    """One request type's line of ``<prefix>_stats.csv``; times in milliseconds."""

    requests: int
    failures: int
    per_second: float
    p50: float
    p95: float
    p99: float
    max: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_stats(prefix: Path) -> dict[str, Figures]:
    """Figures by request type (``run``, ``dispatch``) from Locust's ``--csv`` files."""
    path = prefix.with_name(prefix.name + "_stats.csv")
    if not path.exists():
        raise LoadReportError(f"{path}: Locust wrote no statistics; see {prefix.parent / 'locust.log'}")
    figures: dict[str, Figures] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Type"] and row["Name"] != "Aggregated":
                figures[row["Type"]] = Figures(
                    requests=int(row["Request Count"]),
                    failures=int(row["Failure Count"]),
                    per_second=round(float(row["Requests/s"]), 2),
                    p50=float(row["50%"]),
                    p95=float(row["95%"]),
                    p99=float(row["99%"]),
                    max=round(float(row["Max Response Time"]), 1),
                )
    return figures


def read_failures(prefix: Path) -> list[dict[str, Any]]:
    """Distinct failure messages and how often each occurred."""
    path = prefix.with_name(prefix.name + "_failures.csv")
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [{"error": row["Error"], "occurrences": int(row["Occurrences"])} for row in csv.DictReader(handle)]


def drift(prefix: Path, kind: str, column: str = "99%") -> dict[str, float] | None:
    """How a latency held up over the run: the median of Locust's windowed ``column`` (its last
    10 s) over the run's first sixth against its last sixth (for the hour's soak: the first 10
    minutes against the last 10, issue 19's bar being a ratio of at most 1.2). None when either
    sixth has fewer than 5 values."""
    points = _history(prefix, kind, column)
    if not points:
        return None
    window = points[-1][0] / 6
    first = [y for x, y in points if x < window]
    last = [y for x, y in points if x > points[-1][0] - window]
    if len(first) < 5 or len(last) < 5 or statistics.median(first) <= 0:
        return None
    early, late = statistics.median(first), statistics.median(last)
    return {"window_s": round(window), "first_ms": early, "last_ms": late, "ratio": round(late / early, 2)}


#: Line colours of the systems in the comparison plot.
COLOURS = {"coditect": "#1f6feb", "celery": "#d1242f"}


def write_comparison(prefixes: dict[str, Path], title: str, csv_path: Path, html_path: Path) -> None:
    """Both systems' figures side by side (CSV), and their latency over time (HTML, inline SVG)."""
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["system", "request", "count", "failed", "per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms"])
        for system, prefix in prefixes.items():
            for kind, f in read_stats(prefix).items():
                writer.writerow([system, kind, f.requests, f.failures, f.per_second, f.p50, f.p95, f.p99, f.max])
    charts = []
    for kind in ("dispatch", "run"):
        for column in ("50%", "99%"):
            series = {system: _history(prefix, kind, column) for system, prefix in prefixes.items()}
            charts.append(_lines(f"{kind} p{column.rstrip('%')} (ms) over time (s)", series))
    legend = " ".join(f"<span style='color:{COLOURS.get(s, '#000')}'>■ {html.escape(s)}</span>" for s in prefixes)
    html_path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block;margin:1em}"
        "figcaption{font-weight:bold}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{legend}</p>{''.join(charts)}</body></html>"
    )


def _history(prefix: Path, kind: str, column: str) -> list[tuple[float, float]]:
    """(seconds since the first row, value) of one request type's column in Locust's full history."""
    path = prefix.with_name(prefix.name + "_stats_history.csv")
    if not path.exists():
        return []
    points: list[tuple[float, float]] = []
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["Type"] == kind and r[column] not in ("", "N/A")]
    for row in rows:
        points.append((float(row["Timestamp"]) - float(rows[0]["Timestamp"]), float(row[column])))
    return points


def _lines(name: str, series: dict[str, list[tuple[float, float]]], width: int = 520, height: int = 220) -> str:
    """One chart, one polyline per system, on shared axes."""
    values = [point for points in series.values() for point in points]
    if len(values) < 2:
        return f"<figure><figcaption>{html.escape(name)}</figcaption><p>too few samples</p></figure>"
    pad = 40
    high = max(y for _, y in values) or 1.0
    span_x = max(x for x, _ in values) or 1.0
    lines = "".join(
        f"<polyline fill='none' stroke='{COLOURS.get(system, '#000')}' stroke-width='2' points='"
        + " ".join(
            f"{pad + x / span_x * (width - 2 * pad):.1f},{height - pad - y / high * (height - 2 * pad):.1f}"
            for x, y in points
        )
        + "'/>"
        for system, points in series.items()
    )
    return (
        f"<figure><figcaption>{html.escape(name)}</figcaption>"
        f"<svg width='{width}' height='{height}' role='img' aria-label='{html.escape(name)}'>"
        f"<rect x='{pad}' y='{pad}' width='{width - 2 * pad}' height='{height - 2 * pad}' fill='#f6f6f6'/>{lines}"
        f"<text x='{pad}' y='{pad - 8}' font-size='12'>{high:.0f}</text>"
        f"<text x='{pad}' y='{height - pad + 16}' font-size='12'>0</text>"
        f"<text x='{width - pad}' y='{height - pad + 16}' font-size='12' text-anchor='end'>{span_x:.0f} s</text>"
        "</svg></figure>"
    )
