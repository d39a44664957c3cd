"""Critical-path order: which of a run's ready nodes goes first when workers are scarce.

A node's weight is the longest path from it to the run's end, each node on it counting its
agent's median duration (learned from the history; an agent never seen counts as the median of
those seen, or 1 s). Airflow's ``priority_weight`` with ``weight_rule=downstream`` counts nodes and
is set by hand; learning the durations is what makes one slow chain start before forty quick
leaves. The engine orders a run's ready nodes by rank: 0 is the heaviest.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping

from .plan import Plan

#: Seconds a node of an agent with no observed duration counts for, when none has one.
UNKNOWN_SECONDS = 1.0


def weights(plan: Plan, seconds: Mapping[str, float]) -> dict[str, float]:
    """Node → the longest path from it to a sink, summing each node's agent's ``seconds``."""
    fallback = statistics.median(seconds.values()) if seconds else UNKNOWN_SECONDS
    out: dict[str, float] = {}
    for node in reversed(plan.order):
        own = seconds.get(plan.dag.nodes[node].agent, fallback)
        out[node] = own + max((out[succ] for succ in plan.succs[node]), default=0.0)
    return out


def ranks(plan: Plan, seconds: Mapping[str, float], enabled: bool = True) -> dict[str, int]:
    """Node → its rank among the run's nodes: heaviest first (ties in the DAG's order), or, not
    ``enabled``, simply the DAG's order (first ready, first served)."""
    position = {node: index for index, node in enumerate(plan.dag.nodes)}
    if not enabled:
        return position
    weight = weights(plan, seconds)
    order = sorted(plan.dag.nodes, key=lambda node: (-weight[node], position[node]))
    return {node: rank for rank, node in enumerate(order)}


def median_seconds(counters: Mapping[str, str], buckets: tuple[float, ...]) -> dict[str, float]:
    """Agent → its median node duration, from the engine's histogram counters (``keys.METRICS``
    fields ``duration|<agent>|<le>``, one count per bucket): the upper bound of the bucket that
    holds the middle observation."""
    counts: dict[str, dict[str, int]] = {}
    for field, value in counters.items():
        kind, _, rest = field.partition("|")
        agent, _, le = rest.rpartition("|")
        if kind == "duration" and agent:
            counts.setdefault(agent, {})[le] = int(value)
    bounds = [*(format(b, "g") for b in buckets), "+Inf"]
    medians = {}
    for agent, by_le in counts.items():
        total, seen = sum(by_le.values()), 0
        for le in bounds:
            seen += by_le.get(le, 0)
            if total and seen * 2 >= total:
                medians[agent] = float(le) if le != "+Inf" else buckets[-1] * 2
                break
    return medians
