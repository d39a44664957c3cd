"""A node's streamed output, as its agent writes it (``call.stream``): each chunk one fenced
script call (output.lua) that appends it to the run's output stream, where readers follow it
live (``DagRun.stream``, ``GET /api/runs/{id}/nodes/{node}/stream``)."""

from __future__ import annotations

import json
import logging
from typing import Any

from ..engine.transitions import Engine
from ..errors import InvalidArgumentError, StreamLimitError
from ..keys import MAX_CHUNK_BYTES

log = logging.getLogger(__name__)


class NodeOutput:
    """Where one attempt of one node streams to."""

    def __init__(self, engine: Engine, run_id: str, node_id: str, token: int, most: int) -> None:
        self.engine = engine
        self.run_id = run_id
        self.node_id = node_id
        self.token = token
        self.most = most
        self._stale = False

    def write(self, chunk: Any) -> None:
        """Append ``chunk`` (text, or anything JSON); ``InvalidArgumentError`` for one that is not
        JSON or is over ``MAX_CHUNK_BYTES``, ``StreamLimitError`` past the node's bound."""
        try:
            text = json.dumps(chunk, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"a streamed chunk must be text or JSON: {exc}") from None
        if len(text.encode()) > MAX_CHUNK_BYTES:
            raise InvalidArgumentError(
                f"a streamed chunk is {len(text.encode())} bytes as JSON, over {MAX_CHUNK_BYTES}"
            )
        if self._stale:
            return
        reply = self.engine.output(self.run_id, self.node_id, self.token, text, self.most)
        if reply == "full":
            raise StreamLimitError(self.node_id, self.most)
        if reply == "stale":  # another attempt runs the node now: this one's output would mislead
            self._stale = True
            log.warning(
                "node %s of run %s: attempt %d is no longer the node's: its output is dropped",
                self.node_id,
                self.run_id,
                self.token,
            )
