"""Read Locust's CSV report back: the figures a load test is judged by."""

from __future__ import annotations

import csv
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
