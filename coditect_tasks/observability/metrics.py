"""Prometheus metrics: a collector that reads the platform's state from Redis at scrape time.

Workers run on many hosts and come and go, so they are not scraped one by one: the
engine's Lua scripts count runs, attempts, outcomes, failovers and node durations
into one Redis hash (``keys.METRICS``) atomically with each transition, and this
collector turns that hash, the queue lengths, the worker registry and the breaker
states into metrics. Task-level figures Flower already exports (task runtime by task
and worker, events, workers online) are left to Flower; see the README.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import keys
from ..broker import queue_depths
from ..cells import counted, summed
from ..dag.waits import KINDS
from ..engine.scripts import Routed
from ..engine.transitions import now
from ..limits import document
from ..registry import Registry
from ..resilience.breaker import breaker_states
from ..status import TERMINAL

BREAKER_STATES = ("closed", "open", "half-open")
RUN_STATES = tuple(sorted(TERMINAL))


class PlatformCollector(Collector):
    """Everything ``coditect-tasks exporter`` serves, read fresh on every scrape.

    ``state`` is the state Redis (registry, run counters, breakers); ``broker_url`` the
    broker that holds the agents' queues (Redis or RabbitMQ).
    """

    def __init__(self, state: redis.Redis, broker_url: str, agents: Iterable[str], cells: int = 1) -> None:
        self.state = state
        self.broker_url = broker_url
        self.declared = tuple(agents)
        self.cells = cells
        self.limit_script = Routed(state, "limit")

    def collect(self) -> Iterator[Metric]:
        counters = summed(self.state, keys.METRICS, self.cells)
        frontier = {k: int(v) for k, v in summed(self.state, keys.FRONTIER, self.cells).items()}
        live = Registry(self.state).by_agent()
        agents = sorted(set(self.declared) | set(live) | _agents_in(counters) | _agents_in(frontier))
        yield from _run_metrics(counters)
        yield from _node_metrics(counters)
        yield _histogram(
            counters,
            "coditect_node_duration_seconds",
            "Wall time of node attempts from begin to end, by agent.",
            "duration",
            "duration_sum",
            True,
        )
        yield _histogram(
            counters,
            "coditect_run_duration_seconds",
            "Wall time of DAG runs from submit to succeeded or failed.",
            "run_duration",
            "run_duration_sum",
            False,
        )
        yield from self._agent_gauges(agents, live)
        yield from _frontier_gauges(agents, frontier)
        yield from _limit_gauges(document(self.limit_script(args=["", now(), "read", ""])))
        yield GaugeMetricFamily(
            "coditect_recorder_lag_entries",
            "Transitions in the history stream not yet written to the database (the recorder's backlog).",
            value=float(counted(self.state, "xlen", keys.HISTORY, self.cells)),
        )
        yield GaugeMetricFamily(
            "coditect_runs_unrecorded",
            "Finished runs whose history is not written yet: their live state stays in Redis until it is.",
            value=float(counted(self.state, "zcard", keys.UNRECORDED, self.cells)),
        )
        yield GaugeMetricFamily(
            "coditect_outbox_entries",
            "Node messages waiting in the outbox for a worker to publish them (RabbitMQ brokers only).",
            value=float(counted(self.state, "llen", keys.OUTBOX, self.cells)),
        )

    def _agent_gauges(self, agents: list[str], live: Mapping[str, Sequence[object]]) -> Iterator[Metric]:
        depths = queue_depths(self.broker_url, [keys.agent_queue(agent) for agent in agents])
        depth = GaugeMetricFamily("coditect_queue_depth", "Messages waiting in an agent's queue.", labels=["agent"])
        workers = GaugeMetricFamily("coditect_workers", "Live worker pools serving an agent.", labels=["agent"])
        for agent in agents:
            depth.add_metric([agent], float(depths[keys.agent_queue(agent)]))
            workers.add_metric([agent], float(len(live.get(agent, []))))
        breaker = GaugeMetricFamily(
            "coditect_breaker_state",
            "1 for the state an agent's circuit breaker is in, else 0.",
            labels=["agent", "state"],
        )
        for agent, state in breaker_states(self.state, agents).items():
            for name in BREAKER_STATES:
                breaker.add_metric([agent, name], 1.0 if state == name else 0.0)
        yield depth
        yield workers
        yield breaker


def _frontier_gauges(agents: list[str], frontier: Mapping[str, int]) -> Iterator[Metric]:
    """What an autoscaler reads: an agent's work now, and the work arriving within one node time.

    Both come from counters the engine keeps on each transition, not from queue lengths, which
    miss messages a worker has prefetched or is running.
    """
    demand = GaugeMetricFamily(
        "coditect_agent_demand", "Nodes of an agent queued, reserved by a worker or running.", labels=["agent"]
    )
    upcoming = GaugeMetricFamily(
        "coditect_agent_upcoming",
        "Pending nodes of an agent whose every unfinished predecessor is running now.",
        labels=["agent"],
    )
    for agent in agents:
        demand.add_metric([agent], float(frontier.get(f"demand|{agent}", 0)))
        upcoming.add_metric([agent], float(frontier.get(f"upcoming|{agent}", 0)))
    yield demand
    yield upcoming
    waiting = GaugeMetricFamily(
        "coditect_nodes_waiting",
        "Waiting nodes (an event, approvals, a sleep, child runs): no worker holds them, no autoscaler counts them.",
        labels=["kind"],
    )
    for kind in (*KINDS, "spawn"):
        waiting.add_metric([kind], float(frontier.get(f"waiting|{kind}", 0)))
    yield waiting


def _limit_gauges(limits: list[dict[str, Any]]) -> Iterator[Metric]:
    """Per limit, summed over its key values: nodes holding it, waiting for it (not counted in
    ``coditect_agent_demand``: more workers cannot help them), units in its rate window, the oldest wait."""
    gauges = {
        "in_use": GaugeMetricFamily("coditect_limit_in_use", "Nodes holding a limit now.", labels=["limit"]),
        "waiting": GaugeMetricFamily(
            "coditect_limit_waiting",
            "Nodes queued, waiting for a full limit (no message, no worker slot).",
            labels=["limit"],
        ),
        "units": GaugeMetricFamily(
            "coditect_limit_units",
            "Units a rate limit's window holds now (started within its last `per` seconds).",
            labels=["limit"],
        ),
        "oldest_wait": GaugeMetricFamily(
            "coditect_limit_oldest_wait_seconds",
            "Seconds the oldest node waiting for a limit has waited.",
            labels=["limit"],
        ),
    }
    for limit in limits:
        rows = limit["keys"]
        for field, gauge in gauges.items():
            values = [float(row[field]) for row in rows] or [0.0]
            gauge.add_metric([limit["name"]], max(values) if field == "oldest_wait" else sum(values))
    yield from gauges.values()


def _agents_in(counters: Mapping[str, object]) -> set[str]:
    """Agents named in node counters (``<kind>|<agent>[|…]``)."""
    kinds = {"attempts", "nodes", "failovers", "duplicates", "duration", "duration_sum", "demand", "upcoming"}
    return {parts[1] for parts in (field.split("|") for field in counters) if parts[0] in kinds and len(parts) > 1}


def _run_metrics(counters: Mapping[str, str]) -> Iterator[Metric]:
    submitted = int(counters.get("runs_submitted", 0))
    finished = CounterMetricFamily(
        "coditect_runs_finished", "DAG runs that reached a terminal state.", labels=["status"]
    )
    done = 0
    for status in RUN_STATES:
        count = int(counters.get(f"runs|{status}", 0))
        done += count
        finished.add_metric([status], float(count))
    yield CounterMetricFamily("coditect_runs_submitted", "DAG runs accepted by submit.", value=float(submitted))
    yield finished
    yield GaugeMetricFamily(
        "coditect_runs_running", "DAG runs submitted and not yet terminal.", value=float(max(submitted - done, 0))
    )
    yield CounterMetricFamily(
        "coditect_recorder_dead_letters",
        "History entries the recorder could not write, moved to the dead-letter stream.",
        value=float(counters.get("recorder_dead", 0)),
    )


def _node_metrics(counters: Mapping[str, str]) -> Iterator[Metric]:
    attempts = CounterMetricFamily("coditect_node_attempts", "Node attempts begun, by agent.", labels=["agent"])
    outcomes = CounterMetricFamily(
        "coditect_node_outcomes",
        "Node attempts ended, by agent and outcome (succeeded, failed, retried, rerouted to a fallback).",
        labels=["agent", "outcome"],
    )
    failovers = CounterMetricFamily(
        "coditect_node_failovers",
        "Nodes queued again because their worker died or their message was lost.",
        labels=["agent"],
    )
    duplicates = CounterMetricFamily(
        "coditect_node_duplicates",
        "Messages dropped: their node's attempt was alive or a newer message replaced them.",
        labels=["agent"],
    )
    for field, value in sorted(counters.items()):
        parts = field.split("|")
        if parts[0] == "attempts" and len(parts) == 2:
            attempts.add_metric([parts[1]], float(value))
        elif parts[0] == "nodes" and len(parts) == 3:
            outcomes.add_metric([parts[1], parts[2]], float(value))
        elif parts[0] == "failovers" and len(parts) == 2:
            failovers.add_metric([parts[1]], float(value))
        elif parts[0] == "duplicates" and len(parts) == 2:
            duplicates.add_metric([parts[1]], float(value))
    yield attempts
    yield outcomes
    yield failovers
    yield duplicates


def _histogram(
    counters: Mapping[str, str], name: str, doc: str, buckets: str, sums: str, labelled: bool
) -> HistogramMetricFamily:
    """A histogram from its stored fields: ``<buckets>[|<label>]|<le>`` hold one count per bound
    (Prometheus wants them cumulative) and ``<sums>[|<label>]`` the sum of observations."""
    counts: dict[str, dict[float, int]] = defaultdict(dict)
    for field, value in counters.items():
        parts = field.split("|")
        if parts[0] == buckets and len(parts) == (3 if labelled else 2):
            counts[parts[1] if labelled else ""][math.inf if parts[-1] == "+Inf" else float(parts[-1])] = int(value)
    family = HistogramMetricFamily(name, doc, labels=["agent"] if labelled else None)
    for label, by_bound in sorted(counts.items()):
        cumulative, total = [], 0
        for bound in sorted(by_bound):
            total += by_bound[bound]
            cumulative.append(("+Inf" if bound == math.inf else format(bound, "g"), float(total)))
        if cumulative[-1][0] != "+Inf":
            cumulative.append(("+Inf", float(total)))
        sum_field = f"{sums}|{label}" if labelled else sums
        family.add_metric([label] if labelled else [], cumulative, sum_value=float(counters.get(sum_field, 0)))
    return family
