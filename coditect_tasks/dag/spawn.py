"""``Spawn``: an agent that plans at run time starts child runs and waits for them, holding no worker.

A node whose agent returns ``Spawn(dag)`` or ``Spawn([dag, ...])`` (or calls ``call.spawn(...)``
before it returns) ends its attempt by starting each DAG as a run of its own, linked to it
(``parent_run_id``, ``parent_node``), in the same script: a crash or a retried attempt never makes a
second set. The node then waits, holding no worker slot, and succeeds once every child has ended:
with the child's results (node → result) for one DAG, a list of them for a list. A failed or
cancelled child fails the node, naming it; the node's retry policy applies, and its next attempt
spawns anew. A child may spawn in turn, within ``CODITECT_SPAWN_MAX_DEPTH`` levels and
``CODITECT_SPAWN_MAX_NODES`` nodes per root run's tree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .spec import Dag


class Spawn:
    """Child DAGs a node starts as runs of their own (``dags``); ``one``: the agent gave one DAG,
    not a list, so the node's result is that child's results alone."""

    __slots__ = ("dags", "one")

    def __init__(self, dags: Dag | Iterable[Dag]) -> None:
        self.one = isinstance(dags, Dag)
        self.dags: tuple[Dag, ...] = (dags,) if isinstance(dags, Dag) else tuple(dags)
        for dag in self.dags:
            if not isinstance(dag, Dag):
                raise TypeError(f"Spawn takes a Dag or a list of them, not {type(dag).__name__}")

    def __repr__(self) -> str:
        return f"Spawn({', '.join(dag.name for dag in self.dags)})"


def requested(result: Any, spawned: list[Any]) -> Spawn | None:
    """The children an agent asked for: the ``Spawn`` it returned, else what it passed to
    ``call.spawn`` (one call with one DAG keeps ``one``); None if it spawned nothing."""
    if isinstance(result, Spawn):
        return result
    if not spawned:
        return None
    if len(spawned) == 1:
        return Spawn(spawned[0])
    return Spawn([dag for each in spawned for dag in Spawn(each).dags])
