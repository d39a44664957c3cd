"""Limits: global concurrency and rate limits that hold across every worker, enforced by the engine.

A ``Limit`` caps the nodes that hold it: at most ``concurrency`` running at once, at most
``rate`` units started in any ``per`` seconds. ``key="repo"`` makes one limit per value of a
node's ``params["repo"]``; ``units="tokens"`` charges a node ``params["tokens"]`` units. Agents
declare limits (``@agent(..., limits=[...])``), nodes name them (``limits: [openai]``), and
operators change them at run time (``coditect-tasks limits set``).

Unlike Celery's ``rate_limit`` (per worker process) the engine takes a node's limits in the same
script that would queue its message, all or none: a node that cannot take them all waits queued
with no message and no worker slot, and the script that ends a holder's attempt lets the oldest
waiter go. A dead holder's limits go when its lease lapses (the reaper ends its attempt).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

from .errors import DagError, InvalidArgumentError

#: A limit's name is part of Redis keys and metric labels: kept plain, as an agent's is.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

#: Longest rate window in seconds (a day): a window's charges stay in Redis that long.
MAX_PER = 24 * 3600.0


@dataclass(frozen=True)
class Limit:
    """A limit named ``name``: ``concurrency`` nodes at once and/or ``rate`` units per ``per`` seconds,
    per value of ``params[key]`` if ``key`` is given, each node charging ``params[units]`` (default 1)."""

    name: str
    _: KW_ONLY
    concurrency: int | None = None
    rate: float | None = None
    per: float = 1.0
    key: str | None = None
    units: str | None = None

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise InvalidArgumentError(f"limit {self.name!r}: {problem}")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"per": self.per}
        for name in ("concurrency", "rate", "key", "units"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return data

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> Limit:
        return cls(
            name,
            concurrency=data.get("concurrency"),
            rate=data.get("rate"),
            per=float(data.get("per", 1.0)),
            key=data.get("key"),
            units=data.get("units"),
        )

    def describe(self) -> str:
        """One line: ``2 at once per repo, 20 tokens / 2 s``."""
        parts = []
        if self.concurrency is not None:
            parts.append(f"{self.concurrency} at once")
        if self.rate is not None:
            parts.append(f"{self.rate:g} {self.units or 'nodes'} / {self.per:g} s")
        return ", ".join(parts) + (f" per {self.key}" if self.key else "")


def _problem(limit: Limit) -> str | None:
    if not isinstance(limit.name, str) or not NAME_PATTERN.match(limit.name):
        return f"the name must match {NAME_PATTERN.pattern}"
    if limit.concurrency is None and limit.rate is None:
        return "give concurrency, rate, or both"
    if limit.concurrency is not None and (
        isinstance(limit.concurrency, bool) or not isinstance(limit.concurrency, int) or limit.concurrency < 1
    ):
        return "concurrency must be a whole number ≥ 1"
    if limit.rate is not None and not _positive(limit.rate):
        return "rate must be a positive number of units"
    if not _positive(limit.per) or limit.per > MAX_PER:
        return f"per must be a positive number of seconds, at most {MAX_PER:g}"
    for field in ("key", "units"):
        value = getattr(limit, field)
        if value is not None and (not isinstance(value, str) or not value):
            return f"{field} must name a parameter"
    return None


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def holds(
    source: str, node: str, params: Mapping[str, Any], names: Iterable[str], known: Mapping[str, Limit]
) -> list[list[Any]]:
    """What node ``node`` holds while it runs: ``[limit, key value, units]`` for each of ``names``
    (its agent's and its own), resolved from its ``params``. ``DagError`` naming the node for an
    unknown limit, a missing key parameter or units that are not a positive number."""
    out: list[list[Any]] = []
    for name in dict.fromkeys(names):
        limit = known.get(name)
        if limit is None:
            problem = f"unknown limit {name!r} (known: {', '.join(sorted(known)) or 'none'})"
            raise DagError(source, problem, node=node)
        value = ""
        if limit.key is not None:
            if limit.key not in params:
                raise DagError(
                    source, f"limit {name!r} is per params[{limit.key!r}], which the node does not set", node
                )
            raw = params[limit.key]
            value = raw if isinstance(raw, str) else json.dumps(raw, sort_keys=True)
        units: Any = 1
        if limit.units is not None:
            units = params.get(limit.units, 1)
            if not _positive(units):
                raise DagError(source, f"limit {name!r}: params[{limit.units!r}] must be a positive number", node)
        out.append([name, value, units])
    return out


def change(
    name: str, concurrency: int | None = None, rate: float | None = None, per: float | None = None
) -> dict[str, Any]:
    """An operator's change of limit ``name`` (``limits set``), checked as a declaration is; at least one field."""
    given = {k: v for k, v in (("concurrency", concurrency), ("rate", rate), ("per", per)) if v is not None}
    if not given:
        raise InvalidArgumentError(f"limit {name!r}: give concurrency, rate or per to change")
    placeholder = 1.0 if concurrency is None and rate is None else rate  # only per given: check it alone
    Limit(name, concurrency=concurrency, rate=placeholder, per=1.0 if per is None else per)
    return given


def document(reply: str | bytes) -> list[dict[str, Any]]:
    """limit.lua's ``read`` reply: each limit with its definition (as ``Limit.to_json``), the
    operator's change (or false), and per key value ``in_use``, ``waiting``, ``units`` (charged in
    the rate window now) and ``oldest_wait`` (seconds the oldest waiter has waited)."""
    limits = json.loads(reply)
    if not isinstance(limits, list):  # cjson encodes an empty table as {}
        return []
    for limit in limits:
        limit["keys"] = limit["keys"] or []
    return sorted(limits, key=lambda limit: limit["name"])
