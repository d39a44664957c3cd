"""What ``coditect-tasks chaos`` says: a table, one JSON document, or an HTML page with a timeline
per fault (an SVG: the fault's own acts in red, the probe run's transitions in blue)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from .faults import Outcome
from .verdicts import Objectives

#: Figures shown in the table, with their headings.
COLUMNS = (
    ("failover_seconds", "failover s"),
    ("run_seconds", "run s"),
    ("executions", "ran"),
    ("duplicates", "twice"),
    ("lost", "lost"),
)


def document(outcomes: Sequence[Outcome], objectives: Objectives) -> dict[str, Any]:
    return {
        "passed": all(o.verdict != "failed" for o in outcomes),
        "objectives": objectives.to_json(),
        "faults": [
            {
                "fault": o.fault,
                "verdict": o.verdict,
                "figures": o.figures,
                "problems": o.problems,
                "skipped": o.skipped,
                "timeline": sorted(
                    [{"at": at, "what": what, "by": "fault"} for at, what in o.acts]
                    + [{"at": at, "what": what, "by": "run"} for at, what in o.timeline],
                    key=lambda e: e["at"],
                ),
            }
            for o in outcomes
        ],
    }


def table(outcomes: Sequence[Outcome]) -> Table:
    grid = Table(title="chaos: one verdict per fault")
    grid.add_column("fault", no_wrap=True)
    grid.add_column("verdict", no_wrap=True)
    for _, heading in COLUMNS:
        grid.add_column(heading, justify="right")
    grid.add_column("why")
    style = {"passed": "green", "failed": "bold red", "skipped": "yellow"}
    for o in outcomes:
        cells = ["" if o.figures.get(k) is None else str(o.figures[k]) for k, _ in COLUMNS]
        grid.add_row(o.fault, f"[{style[o.verdict]}]{o.verdict}[/]", *cells, escape(o.why))
    return grid


def page(outcomes: Sequence[Outcome], objectives: Objectives) -> str:
    """The HTML report: the verdicts, then a section per fault with its timeline."""
    rows = "".join(
        f"<tr><td>{_e(o.fault)}</td><td class={o.verdict}>{o.verdict}</td>"
        + "".join(f"<td>{_e(o.figures.get(k, ''))}</td>" for k, _ in COLUMNS)
        + f"<td>{_e(o.why)}</td></tr>"
        for o in outcomes
    )
    heads = "".join(f"<th>{_e(h)}</th>" for _, h in COLUMNS)
    sections = "".join(_section(o) for o in outcomes if not o.skipped)
    wanted = ", ".join(f"{k} {v:g}" for k, v in objectives.to_json().items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>coditect-tasks chaos</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; }}
.passed {{ color: #17803d; font-weight: bold; }} .failed {{ color: #c0262d; font-weight: bold; }}
.skipped {{ color: #a86b00; }} svg text {{ font: 11px system-ui, sans-serif; }}
</style></head><body>
<h1>coditect-tasks chaos</h1>
<p>Objectives: {_e(wanted)}.</p>
<table><tr><th>fault</th><th>verdict</th>{heads}<th>why</th></tr>{rows}</table>
{sections}
</body></html>
"""


def _section(outcome: Outcome) -> str:
    events = [(at, what, "#c0262d") for at, what in outcome.acts] + [
        (at, what, "#2463c0") for at, what in outcome.timeline
    ]
    return f"<h2>{_e(outcome.fault)}: {outcome.verdict}</h2>\n{_timeline(events)}\n"


def _timeline(events: Sequence[tuple[float, str, str]]) -> str:
    """An SVG: a time axis in seconds, one labelled mark per event in its colour."""
    if not events:
        return "<p>(no events)</p>"
    start = min(0.0, *(at for at, _, _ in events))
    end = max(1.0, *(at for at, _, _ in events))
    width, left, row = 900, 60, 16
    height = 40 + row * len(events)

    def x(at: float) -> float:
        return left + (at - start) / (end - start) * (width - left - 240)

    marks = []
    for i, (at, what, colour) in enumerate(sorted(events)):
        y = 30 + row * i
        marks.append(
            f'<line x1="{x(at):.1f}" y1="20" x2="{x(at):.1f}" y2="{y}" stroke="{colour}" stroke-opacity="0.3"/>'
            f'<circle cx="{x(at):.1f}" cy="{y}" r="4" fill="{colour}"/>'
            f'<text x="{x(at) + 8:.1f}" y="{y + 4}">{_e(f"{at:+.2f} s  {what}")}</text>'
        )
    ticks = "".join(
        f'<text x="{x(t):.1f}" y="14" text-anchor="middle">{t:g} s</text>'
        for t in range(int(start), int(end) + 1, max(1, int((end - start) // 10) or 1))
    )
    return (
        f'<svg width="{width}" height="{height}" role="img" aria-label="timeline">'
        f'<line x1="{left}" y1="20" x2="{width - 240}" y2="20" stroke="#888"/>{ticks}{"".join(marks)}</svg>'
    )


def _e(value: object) -> str:
    return html.escape(str(value))
