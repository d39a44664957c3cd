"""Validate a DAG with networkx and plan its execution, before anything is enqueued.

The plan is what the engine needs: each node's direct predecessors and
successors, the roots, and a topological order. Pure: no Redis, no Celery.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import networkx as nx

from ..errors import CycleError, DagError, DagTooLargeError, UnknownAgentError
from ..settings import Settings
from .spec import Dag, Node

#: Default ceilings: the settings' defaults, which ``CODITECT_MAX_*`` may lower or raise (``Settings.dag_limits``).
MAX_NODES = Settings.max_nodes
MAX_PARAMS_BYTES = Settings.max_params_bytes
MAX_FOREACH_ITEMS = Settings.max_foreach_items
#: Longest run name: it is a column of the history (255 characters).
MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class Plan:
    """A validated DAG, ready for the engine."""

    dag: Dag
    preds: dict[str, list[str]]
    succs: dict[str, list[str]]
    order: list[str]

    @property
    def roots(self) -> list[str]:
        return [node for node in self.order if not self.preds[node]]


def validate(
    dag: Dag,
    agents: Collection[str],
    max_nodes: int = MAX_NODES,
    max_params_bytes: int = MAX_PARAMS_BYTES,
    max_foreach_items: int = MAX_FOREACH_ITEMS,
) -> Plan:
    """Check everything that would make the run fail for a reason known up front."""
    source = dag.source
    if len(dag.nodes) > max_nodes:
        raise DagTooLargeError(source, f"{len(dag.nodes)} nodes exceed the maximum of {max_nodes}")
    if len(dag.name) > MAX_NAME_CHARS or not dag.name.isprintable():
        raise DagError(source, f"'name' must be at most {MAX_NAME_CHARS} printable characters ({len(dag.name)} given)")
    for node in dag.nodes.values():
        for pred in node.after:
            if pred not in dag.nodes:
                raise DagError(source, f"'after' names missing node {pred!r}", node=node.id)
        if node.foreach == node.id:
            raise DagError(source, "'foreach' names the node itself", node=node.id)
        if isinstance(node.foreach, str) and node.foreach not in dag.nodes:
            raise DagError(source, f"'foreach' names missing node {node.foreach!r}", node=node.id)
        if node.wait is not None:
            _check_key(source, node, dag)
        for role, name in (("agent", node.agent if node.wait is None else None), ("fallback agent", node.fallback)):
            if name is not None and name not in agents:
                raise DagError(source, f"{role}: {UnknownAgentError(name, agents)}", node=node.id)
        if isinstance(node.foreach, list) and len(node.foreach) > max_foreach_items:
            problem = f"'foreach' has {len(node.foreach)} items, over the limit of {max_foreach_items}"
            raise DagError(source, problem, node=node.id)
    _check_values(dag, max_params_bytes)
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(dag.nodes)
    graph.add_edges_from((pred, node.id) for node in dag.nodes.values() for pred in node.after)
    try:
        order = list(nx.topological_sort(graph))
    except nx.NetworkXUnfeasible:
        edges = nx.find_cycle(graph)
        raise CycleError(source, [u for u, _ in edges] + [edges[0][0]]) from None
    for node in dag.nodes.values():
        if isinstance(node.foreach, str) and not nx.has_path(graph, node.foreach, node.id):
            problem = f"'foreach' names {node.foreach!r}, which is not a predecessor (add it to 'after')"
            raise DagError(source, problem, node=node.id)
    return Plan(
        dag=dag,
        preds={n: list(graph.pred[n]) for n in dag.nodes},
        succs={n: list(graph.succ[n]) for n in dag.nodes},
        order=order,
    )


def _check_key(source: str, node: Node, dag: Dag) -> None:
    """A wait's key names only the node's params and its direct predecessors' results."""
    assert node.wait is not None
    for name, field in node.wait.references():
        if field is None and name not in node.params:
            raise DagError(source, f"'wait.key' names params[{name!r}], which the node does not set", node=node.id)
        if field is not None and name not in node.after:
            problem = f"'wait.key' names {name}.{field}, but {name!r} is not in the node's 'after'"
            raise DagError(source, problem, node=node.id)


def _check_values(dag: Dag, limit: int) -> None:
    """Every node's params and literal foreach list are JSON within ``limit`` bytes: one
    encoding of them all when that is small enough (the common case, fast for 10k nodes),
    else node by node, to name the one at fault."""
    values = [(node, what, value) for node in dag.nodes.values() for what, value in _values(node)]
    try:
        if len(json.dumps([v for _, _, v in values], allow_nan=False).encode()) <= limit:
            return
    except (TypeError, ValueError):
        pass
    for node, what, value in values:
        _check_json(dag.source, node.id, what, value, limit)


def _values(node: Node) -> list[tuple[str, Any]]:
    values: list[tuple[str, Any]] = [("params", node.params)]
    if isinstance(node.foreach, list):
        values.append(("foreach", node.foreach))
    return values


def _check_json(source: str, node: str, what: str, value: Any, limit: int) -> None:
    try:
        size = len(json.dumps(value, allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise DagError(source, f"{what} are not JSON-serialisable: {exc}", node=node) from None
    if size > limit:
        raise DagError(source, f"{what} are {size} bytes, over the limit of {limit}", node=node)
