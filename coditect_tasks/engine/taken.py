"""What a worker's take of a node hands it (``Taken``), and what it asks to take the next node of
its queue in the same script (``TakeNext``, ``Next``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TakeNext:
    """What ``succeed`` needs to take the next message of a pool process's queue itself (``take_next``
    in common.lua): only the engine's messages for ``task`` with the time limits ``hard`` and
    ``soft`` ('' for none), begun for ``worker`` with ``breaker``, noted under ``via`` (the running
    message's id) for ``ttl`` seconds; asked only until ``until`` (``time.monotonic()``), so a
    completion repeated after a Redis outage takes nothing."""

    queue: str
    task: str
    hard: str
    soft: str
    worker: str
    breaker: str
    via: str
    ttl: int
    until: float

    def args(self) -> tuple[str | int, ...]:
        return self.queue, self.task, self.hard, self.soft, self.worker, self.breaker, self.via, self.ttl


#: A node's record (the ``params`` hash) where it holds nothing else: a node whose record is this
#: one has none in Redis (most nodes of a fan-out), and a stored record holds only what differs.
RECORD_DEFAULTS: dict[str, Any] = {
    "params": {},
    "items": None,
    "foreach": False,
    "retries": None,
    "timeout": None,
    "fallback": None,
}


def stored_record(record: dict[str, Any]) -> str | None:
    """What the ``params`` hash holds of ``record``: the fields that differ from their default, as
    JSON; None if none do."""
    differs = {name: value for name, value in record.items() if RECORD_DEFAULTS.get(name, ...) != value}
    return json.dumps(differs, separators=(",", ":")) if differs else None


@dataclass(frozen=True)
class Taken:
    """What ``begin`` hands a worker: the attempt token, the node's record, its
    predecessors' results, the foreach items, the trace context to open its span in, and how
    many retries the node has taken."""

    token: int
    record: dict[str, Any]
    upstream: dict[str, Any]
    items: Any
    parent_span: str
    link_spans: str
    retried: int = 0
    #: The agent's breaker as ``begin`` read it (state, failure count), when it was asked to.
    breaker: tuple[str | None, str | None] | None = None


@dataclass(frozen=True)
class Next:
    """The node a process took after finishing one (``Engine.succeed`` with ``TakeNext``)."""

    run_id: str
    node_id: str
    task_id: str
    taken: Taken


def taken_from(reply: dict[str, Any], breaker: str) -> Taken | None:
    """``take``'s named reply (common.lua) as a ``Taken``, or None if the node must not run."""
    if reply["ok"] != 1:
        return None
    return Taken(
        int(reply["token"]),
        {**RECORD_DEFAULTS, **json.loads(reply["record"] or "{}")},
        json.loads(reply["upstream"]),
        json.loads(reply["items"]) if reply["items"] else None,
        str(reply["parent"] or ""),
        str(reply["links"] or "[]"),
        int(reply["retried"]),
        (reply.get("breaker") or None, reply.get("failures") or None) if breaker else None,
    )
