"""The same DAG as plain Celery canvas: what the load test's plain-Celery user submits.

Celery has no DAG; its canvas composes chains, groups and chords. A DAG becomes a chain of its
topological generations: a generation of one node is one task, of several a group, and a group
followed by more work is a chord (Celery upgrades it). For the shapes the scenarios use this is
the DAG itself (a chain for a chain, ``chain(a, chord([b, c], d))`` for the diamond, a chord for a
fan-out/fan-in); for other DAGs each generation waits for the whole one before it, the nearest
canvas comes. Every call is immutable (``si``): the agents get their params, not upstream results,
so both systems do the same agent work and only the orchestration differs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import networkx as nx
from celery import Celery, chain, group
from celery.canvas import Signature

from ..dag.spec import Dag, Node
from ..errors import ConfigError
from ..keys import agent_queue


@dataclass(frozen=True)
class Canvas:
    """A DAG as one canvas, and the task ids of its first generation (their end marks dispatch)."""

    signature: Signature
    first: tuple[str, ...]


def check(dag: Dag) -> None:
    """``ConfigError`` if canvas cannot say ``dag``: a foreach over a result is known only at run time."""
    for node in dag.nodes.values():
        if isinstance(node.foreach, str):
            raise ConfigError("--dag", f"node {node.id!r}: a foreach over another node's result has no canvas form")


def canvas(dag: Dag, app: Celery) -> Canvas:
    """``dag`` as Celery canvas on ``app`` (``check`` it first)."""
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(dag.nodes)
    graph.add_edges_from((pred, node.id) for node in dag.nodes.values() for pred in node.after)
    parts: list[Signature] = []
    first: list[str] = []
    for generation in nx.topological_generations(graph):
        calls = [call for node_id in sorted(generation) for call in _calls(dag.nodes[node_id], app)]
        if not parts:
            first = [str(call.id) for call in calls]
        parts.append(calls[0] if len(calls) == 1 else group(calls))
    return Canvas(parts[0] if len(parts) == 1 else chain(*parts), tuple(first))


def _calls(node: Node, app: Celery) -> list[Signature]:
    """The task calls of one node: one, or one per item of a literal foreach list."""
    items = node.foreach if isinstance(node.foreach, list) else None
    params = [{**node.params, "item": item} for item in items] if items is not None else [node.params]
    name = agent_queue(node.agent)  # an agent's task has its queue's name
    calls = []
    for values in params:
        call = app.signature(name, kwargs={"params": values}, immutable=True, queue=name)
        call.set(task_id=str(uuid.uuid4()))
        calls.append(call)
    return calls
