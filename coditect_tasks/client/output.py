"""Following what a node streams (``call.stream``), as the clients and the HTTP API read it.

The run's output is one Redis stream (``keys.RUN_HASHES``' ``output``): a reader goes through it
from the start (or after an entry id: a reconnect resumes there), keeps the node's entries, and
blocks on the stream for the next ones until the node has ended and nothing is left to read.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from .. import keys
from ..errors import InvalidArgumentError, RunNotFoundError
from ..status import NodeStatus
from ..steps import Ask, Step

#: Entries one read takes at most.
PAGE = 500
#: Milliseconds a read waits for a new entry before it looks whether the node has ended.
BLOCK_MS = 1000
#: Node statuses after which the node streams nothing more.
ENDED = frozenset({NodeStatus.SUCCEEDED, NodeStatus.FAILED, NodeStatus.SKIPPED, NodeStatus.CANCELLED})


@dataclass(frozen=True)
class Chunk:
    """One entry of a node's output: a chunk its attempt streamed, or a ``rewind`` (a new attempt
    begins its output again: drop what the earlier one showed). ``id`` resumes a reader after it."""

    id: str
    node: str
    attempt: int
    data: Any = None
    rewind: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "node": self.node, "attempt": self.attempt, "data": self.data, "rewind": self.rewind}


def node_output(run_id: str, node: str, after: str | None = None) -> Generator[Step | Chunk, Any, None]:
    """Node ``node``'s output after entry ``after`` (all of it without), live, until the node has ended."""
    prefix = keys.run_prefix(run_id)
    key, last = prefix + "output", after or "0-0"
    status, exists = yield Ask(lambda t: _node_status(t.redis, prefix, node))
    if status is None:
        if not exists:
            raise RunNotFoundError(run_id)  # (or its live state, and its output with it, has left Redis)
        raise InvalidArgumentError(f"run {run_id} has no node {node!r}")
    ended = False
    while True:
        reply = yield Ask(_read(key, last, None if ended else BLOCK_MS))
        entries = reply[0][1] if reply else []
        for entry_id, fields in entries:
            last = entry_id
            if fields["n"] == node:
                yield _chunk(entry_id, fields)
        if entries:
            continue
        if ended:
            return  # what it streamed before it ended is read
        status, _ = yield Ask(lambda t: _node_status(t.redis, prefix, node))
        ended = status is None or status in ENDED


def node_state(redis: Any, run_id: str, node: str) -> tuple[str | None, bool]:
    """The node's status in the live state, and whether the run has live state at all (sync)."""
    status, exists = _node_status(redis, keys.run_prefix(run_id), node)
    return status, bool(exists)


def has_output(redis: Any, run_id: str, node: str, after: str | None) -> bool:
    """Whether the node streamed anything after entry ``after`` (anything at all without), read
    without waiting (sync)."""
    key, start = keys.run_prefix(run_id) + "output", f"({after}" if after else "-"
    while entries := redis.xrange(key, start, "+", count=PAGE):
        if any(fields["n"] == node for _, fields in entries):
            return True
        start = f"({entries[-1][0]}"
    return False


def valid_id(text: str) -> bool:
    """Whether ``text`` is a stream entry id (``<ms>-<seq>``), as a reader may resume after."""
    ms, _, seq = text.partition("-")
    return ms.isdigit() and seq.isdigit()


def _read(key: str, last: str, block: int | None) -> Any:
    return lambda t: t.redis.xread({key: last}, count=PAGE, block=block)


def _node_status(redis: Any, prefix: str, node: str) -> Any:
    """The node's status and whether its run has live state (awaitable on an event loop)."""
    pipe = redis.pipeline(transaction=False)
    pipe.hget(prefix + "status", node)
    pipe.exists(prefix + "run")
    return pipe.execute()


def _chunk(entry_id: str, fields: dict[str, str]) -> Chunk:
    if fields.get("r"):
        return Chunk(entry_id, fields["n"], int(fields["a"]), rewind=True)
    return Chunk(entry_id, fields["n"], int(fields["a"]), json.loads(fields["c"]))
