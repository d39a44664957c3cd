"""One run's submission, prepared once, then written by the sync engine or the asyncio client.

Preparing (descriptions, params, counters, roots) is pure; ``RunWrite.queue`` puts the writes
on a pipeline of either kind (redis-py's sync and asyncio pipelines queue commands alike), and
the submit script that ends the MULTI/EXEC starts the run, or refuses it when an earlier run
holds its idempotency key.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import NoScriptError

from .. import keys
from ..dag.plan import Plan
from ..errors import IdempotencyConflictError, InvalidArgumentError, InvalidIdempotencyKeyError
from ..status import RunStatus
from .message import template_id
from .taken import stored_record

#: Characters an idempotency key may have at most.
MAX_KEY_LENGTH = 256
#: ``script_reply`` when Redis had not loaded the submit script.
MISSING = object()


@dataclass(frozen=True)
class Idempotency:
    """A caller's idempotency key, the digest of the DAG it was given with, and how long it holds."""

    key: str
    digest: str
    seconds: int
    #: The cell of the run that takes the key (``keys.idempotency``).
    cell: int = 0

    @classmethod
    def of(cls, key: object, dag_json: dict[str, Any], seconds: int) -> Idempotency:
        """``InvalidIdempotencyKeyError`` for a key that is not a string of 1 to 256 characters."""
        if not isinstance(key, str):
            raise InvalidIdempotencyKeyError(f"must be a string, not {type(key).__name__}")
        if not key.strip():
            raise InvalidIdempotencyKeyError("must not be empty")
        if len(key) > MAX_KEY_LENGTH:
            raise InvalidIdempotencyKeyError(f"has {len(key)} characters; at most {MAX_KEY_LENGTH} are allowed")
        canonical = json.dumps(dag_json, sort_keys=True, separators=(",", ":"))
        return cls(key, hashlib.sha256(canonical.encode()).hexdigest(), seconds)

    @property
    def redis_key(self) -> str:
        return keys.idempotency(self.key, self.cell)

    @property
    def draw(self) -> str:
        """What a run of this key draws its ramp pins from, in place of its run id: every submit of
        the key draws the same."""
        return hashlib.sha256(self.key.encode()).hexdigest()[: keys.RUN_ID_DIGITS]

    def cell_for(self, cells: int) -> int:
        """The cell a run of this key goes to, of ``cells``, unless it holds a limit (cell 0): the
        same for every submit of the key, so that its atomic check (submit.lua) sees the others."""
        return zlib.crc32(self.key.encode()) % cells

    def holder(self, held: Any) -> str | None:
        """The run id that ``held`` (the key's value, "<run id> <digest>") names for the same DAG;
        None if the key is free; ``IdempotencyConflictError`` if it was taken with another DAG."""
        if held is None:
            return None
        run_id, _, digest = str(held).partition(" ")
        if digest != self.digest:
            raise IdempotencyConflictError(self.key, run_id)
        return run_id


@dataclass(frozen=True)
class Ordering:
    """Where a run's ready nodes stand among others waiting past the hand-off window (keys.WINDOWS):
    their ``priority`` (a node's own wins), the run's ``fairness_key`` (served round robin with the
    others), and each node's ``ranks`` in its run (critical path: 0 goes first)."""

    priority: int = keys.DEFAULT_PRIORITY
    fairness_key: str = ""
    ranks: Mapping[str, int] = field(default_factory=dict)


@dataclass
class RunWrite:
    """Everything one run's submit writes, ready to queue on a pipeline."""

    run_id: str
    run: dict[str, Any]
    hashes: dict[str, dict[str, Any]]
    roots: list[str]
    reused: list[str]
    submitted: str
    idempotency: Idempotency | None = None
    later: list[str] = field(default_factory=list)
    templates: dict[str, str] = field(default_factory=dict)  # id → message template, shared (keys.TEMPLATES)

    def queue(self, pipe: Any, sha: str) -> list[Any]:
        """Queue the writes on ``pipe`` (sync or asyncio), then the submit script (``sha``) by its
        digest; return the script's arguments. Nothing is asked beyond the one MULTI/EXEC: a Redis
        that lost its scripts answers NOSCRIPT (``script_reply``), and the script then runs alone."""
        p = keys.run_prefix(self.run_id)
        cell = keys.cell_of(self.run_id)
        for template, text in self.templates.items():  # shared: the first run to need one writes it
            pipe.hsetnx(keys.in_cell(keys.TEMPLATES, cell), template, text)
        pipe.hset(p + "run", mapping=self.run)
        for suffix, mapping in self.hashes.items():
            if mapping:
                pipe.hset(p + suffix, mapping=mapping)
        stamp = datetime.now(UTC).timestamp()
        pipe.zadd(keys.in_cell(keys.RUNS, cell), {self.run_id: stamp})
        if self.later:
            pipe.rpush(p + "unpushed", *self.later)
            # the reaper's turn (a skewed clock only moves it: slices never overlap)
            pipe.zadd(keys.in_cell(keys.SUBMITTING, cell), {self.run_id: stamp + keys.SUBMIT_STALL_SECONDS})
        args = self.script_args()
        pipe.execute_command("EVALSHA", sha, 1, keys.route(cell), *args)  # a cluster pipeline refuses evalsha()
        return args

    def child(self) -> dict[str, Any]:
        """These writes as the spawn script takes them (spawn.lua): every value a string."""
        return {
            "id": self.run_id,
            "run": {k: str(v) for k, v in self.run.items()},
            "hashes": {suffix: {k: str(v) for k, v in fields.items()} for suffix, fields in self.hashes.items()},
            "roots": self.roots,
            "later": self.later,
            "templates": self.templates,
        }

    def script_args(self) -> list[Any]:
        idem = self.idempotency
        head = [idem.redis_key, idem.digest, idem.seconds] if idem else ["", "", 0]
        return [self.run_id, self.submitted, *head, len(self.reused), *self.reused, *self.roots]

    @staticmethod
    def script_reply(replies: list[Any]) -> Any:
        """The submit script's reply among the transaction's ``replies`` (executed with
        ``raise_on_error=False``); ``MISSING`` if Redis did not have the script (load it, run it
        alone: the writes are in and wait for it); any other error raised."""
        for reply in replies:
            if isinstance(reply, Exception) and not isinstance(reply, NoScriptError):
                raise reply
        return MISSING if isinstance(replies[-1], NoScriptError) else replies[-1]

    def started(self, reply: Any) -> str:
        """The run the submit script's ``reply`` says holds this submission: this one, or the
        earlier run of the same idempotency key (``IdempotencyConflictError`` for another DAG)."""
        if self.idempotency is not None and isinstance(reply, (str, bytes)):
            return self.idempotency.holder(reply.decode() if isinstance(reply, bytes) else reply) or self.run_id
        return self.run_id


def prepare(
    run_id: str,
    plan: Plan,
    templates: dict[str, str],
    node_templates: dict[str, str],
    submitted: str,
    fields: dict[str, Any],
    reused: dict[str, str] | None = None,
    idempotency: Idempotency | None = None,
    held: dict[str, list[list[Any]]] | None = None,
    ordering: Ordering | None = None,
    routing: Mapping[str, str] | None = None,
) -> RunWrite:
    """The writes of run ``run_id``. ``fields`` go into its run hash (trace, parent, outbox). A
    retry passes ``reused``: node → result (JSON) of the nodes that succeeded in its parent; they
    start succeeded, and the run begins at the nodes whose every predecessor is among them.
    ``held``: node → the limits it holds (``limits.holds``), in its description for the engine;
    ``ordering``: where its nodes wait past the hand-off window; ``routing``: agent → the key
    (``coder@2``) whose queue its nodes go to, for the agents a ramp pinned."""
    reused = reused or {}
    ordering = ordering or Ordering()
    dag = plan.dag
    descs: dict[str, str] = {}
    params: dict[str, str] = {}
    pending: dict[str, int] = {}
    for node_id, node in dag.nodes.items():
        desc: dict[str, Any] = {"s": plan.succs[node_id], "p": plan.preds[node_id]}
        if node.wait is not None:
            desc["w"] = node.wait.engine()  # it calls no agent: no queue, no message
        else:
            desc.update(q=keys.agent_queue((routing or {}).get(node.agent, node.agent)), t=node_templates[node_id])
        if node.foreach is not None:
            desc["x"] = 1
        if isinstance(node.foreach, str):
            desc["f"] = node.foreach
        if held and held.get(node_id):
            desc["h"] = held[node_id]
        priority = node.priority if node.priority is not None else ordering.priority
        if priority != keys.DEFAULT_PRIORITY:
            desc["y"] = priority
        if ordering.ranks.get(node_id):
            desc["k"] = ordering.ranks[node_id]
        descs[node_id] = json.dumps(desc, separators=(",", ":"))
        record = stored_record(
            {
                "params": node.params,
                "items": node.foreach if isinstance(node.foreach, list) else None,
                "foreach": node.foreach is not None,
                "retries": node.retries,
                "timeout": node.timeout,
                "fallback": node.fallback,
            }
        )
        if record is not None:
            params[node_id] = record
        pending[node_id] = sum(1 for pred in plan.preds[node_id] if pred not in reused)
    roots = [n for n in plan.order if n not in reused and not pending[n]]
    if not roots:  # every node reused: the run would never end
        raise InvalidArgumentError(f"run {run_id}: nothing to run, every node is reused")
    waiting = {node: count for node, count in pending.items() if count and node not in reused}
    run = {
        "name": dag.name,
        "status": RunStatus.SUBMITTING.value,
        "submitted_at": submitted,
        "total": len(dag.nodes),
        "remaining": len(dag.nodes) - len(reused),
        "active": 0,  # nodes running now (the run hash's counter; a status is never a field name)
        "dag": json.dumps(dag.to_json()),
        **({"fair": ordering.fairness_key} if ordering.fairness_key else {}),
        **({"priority": ordering.priority} if ordering.priority != keys.DEFAULT_PRIORITY else {}),
        **fields,
    }
    ids = {key: template_id(text) for key, text in templates.items()}
    hashes: dict[str, dict[str, Any]] = {
        # '#': this layout (marks.lua); '#<template key>': the id of its template in keys.TEMPLATES
        "node": {**descs, "#": keys.NODE_LAYOUT, **{f"#{key}": ident for key, ident in ids.items()}},
        "params": params,
        "pending": waiting,  # only successors are counted down
        "waiting": dict(waiting),  # no predecessor runs yet
        "status": {n: "succeeded" if n in reused else "pending" for n in dag.nodes},
        "result": dict(reused),
        "finished": dict.fromkeys(reused, submitted),
    }
    shared = {ids[key]: text for key, text in templates.items()}
    return RunWrite(
        run_id,
        run,
        hashes,
        roots[: keys.ROOT_SLICE],
        list(reused),
        submitted,
        idempotency,
        roots[keys.ROOT_SLICE :],
        shared,
    )
