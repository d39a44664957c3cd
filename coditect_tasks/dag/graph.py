"""Mermaid drawings of a DAG, with node states coloured for a run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COLOURS = {
    "pending": "fill:#eeeeee,stroke:#999999",
    "queued": "fill:#fff3bf,stroke:#f08c00",
    "running": "fill:#d0ebff,stroke:#1c7ed6",
    "succeeded": "fill:#d3f9d8,stroke:#2f9e44",
    "failed": "fill:#ffe3e3,stroke:#e03131",
    "skipped": "fill:#f1f3f5,stroke:#adb5bd,stroke-dasharray:4",
    "cancelled": "fill:#f3d9fa,stroke:#9c36b5",
}


def mermaid(dag_json: Mapping[str, Any], states: Mapping[str, str] | None = None) -> str:
    """``flowchart TD`` text: one box per node (id and agent, ×N for foreach), one arrow per dependency."""
    lines = ["flowchart TD"]
    for node in dag_json["nodes"]:
        fan = " ×N" if node.get("foreach") is not None else ""
        label = f"{node['id']}<br/><small>{node['agent']}{fan}</small>"
        lines.append(f'    {node["id"]}["{label}"]')
    for node in dag_json["nodes"]:
        for pred in node.get("after", []):
            lines.append(f"    {pred} --> {node['id']}")
    if states:
        for status, style in COLOURS.items():
            members = [nid for nid, st in states.items() if st == status]
            if members:
                lines.append(f"    classDef {status} {style}")
                lines.append(f"    class {','.join(members)} {status}")
    return "\n".join(lines) + "\n"
