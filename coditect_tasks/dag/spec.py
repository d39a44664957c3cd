"""The one DAG model, built in Python or loaded from YAML/JSON.

Parsing checks shapes and types (``MalformedDagError``); ``plan.validate``
checks the graph (cycles, dependencies, agents, size). Both name the file and
the node, so a user fixes the right line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml_rs

from ..agents import MAX_TIMEOUT
from ..errors import DagError, DagTooLargeError, MalformedDagError
from ..settings import Settings
from .waits import KINDS, Wait, parse

#: Largest DAG document accepted by default, in bytes (``CODITECT_MAX_DAG_BYTES``).
MAX_DAG_BYTES = Settings.max_dag_bytes

#: Node ids become parts of Redis keys and task ids: keep them plain.
NODE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")
NODE_FIELDS = frozenset(
    {"id", "agent", "params", "after", "foreach", "timeout", "retries", "fallback", "limits", "priority", *KINDS}
)
#: The fields that call an agent: a waiting node (``waits.KINDS``) has none of them.
AGENT_FIELDS = frozenset({"agent", "foreach", "timeout", "retries", "fallback", "limits"})
#: Priorities a node or a submit may give: higher goes first (``keys.DEFAULT_PRIORITY`` without one).
PRIORITIES = range(10)


@dataclass(frozen=True)
class Node:
    """One agent call. ``foreach`` is a literal list or the id of an ancestor whose result is a list."""

    #: Unique within the DAG; becomes part of Redis keys and task ids (``NODE_ID``).
    id: str
    #: The agent that runs the call (an ``@agent`` name).
    agent: str
    #: JSON parameters of the call (``call.params``).
    params: dict[str, Any] = field(default_factory=dict)
    #: Ids of the nodes that must succeed first; their results arrive in ``call.upstream``.
    after: tuple[str, ...] = ()
    #: One call per item: a literal list, or the id of an ancestor whose result is a list.
    foreach: str | list[Any] | None = None
    #: Hard time limit in seconds, over the agent's (at most 24 h).
    timeout: float | None = None
    #: Retries after a failure, over the agent's.
    retries: int | None = None
    #: The agent that takes the call while this one's circuit breaker is open, over the agent's.
    fallback: str | None = None
    #: Names of the limits (``limits.Limit``) the node holds while it runs, beside its agent's.
    limits: tuple[str, ...] = ()
    #: 0–9, higher first among ready nodes of its agent (None: its submit's, else 5).
    priority: int | None = None
    #: A waiting node's event, approval or sleep (``waits.Wait``); its ``agent`` is then empty.
    wait: Wait | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id}
        if self.wait is not None:
            data[self.wait.kind] = self.wait.to_json()
        else:
            data["agent"] = self.agent
        if self.params:
            data["params"] = self.params
        if self.after:
            data["after"] = list(self.after)
        if self.limits:
            data["limits"] = list(self.limits)
        for name in ("foreach", "timeout", "retries", "fallback", "priority"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return data


@dataclass
class Dag:
    """A named set of nodes. ``source`` names where it came from, for error messages."""

    name: str
    nodes: dict[str, Node] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        self.source = self.source or f"<dag {self.name}>"

    def node(
        self,
        id: str,
        agent: str,
        params: Mapping[str, Any] | None = None,
        after: Sequence[str] = (),
        foreach: str | Sequence[Any] | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        fallback: str | None = None,
        limits: Sequence[str] = (),
        priority: int | None = None,
    ) -> str:
        """Add a node and return its id (to use in another node's ``after``)."""
        data: dict[str, Any] = {
            "id": id,
            "agent": agent,
            "params": dict(params or {}),
            "after": list(after),
            "limits": list(limits),
        }
        optional = (("foreach", foreach), ("timeout", timeout), ("retries", retries), ("fallback", fallback))
        for key, value in (*optional, ("priority", priority)):
            if value is not None:
                data[key] = value if key != "foreach" or isinstance(value, str) else list(value)  # type: ignore[arg-type]
        self.add(_parse_node(data, self.source, len(self.nodes)))
        return id

    def wait(
        self,
        id: str,
        event: str,
        key: str = "",
        after: Sequence[str] = (),
        timeout: float | None = None,
        lookback: float = 0.0,
        params: Mapping[str, Any] | None = None,
        on_timeout: str = "fail",
    ) -> str:
        """Add a node that waits, holding no worker, for event ``event`` with key ``key`` (``{name}``
        fills in ``params[name]``, ``{node.field}`` a predecessor's result's field); an event sent up
        to ``lookback`` seconds before the wait began counts. Its result is the event's data. At
        ``timeout`` it fails, or with ``on_timeout="skip"`` is skipped and its successors go on."""
        spec = {"event": event, "key": key, "lookback": lookback, "timeout": timeout, "on_timeout": on_timeout}
        return self._waiting(id, "wait", spec, after, params)

    def approval(
        self,
        id: str,
        approvers: int = 1,
        after: Sequence[str] = (),
        timeout: float | None = None,
        on_timeout: str = "fail",
    ) -> str:
        """Add a node that waits for ``approvers`` approvals from distinct people; one rejection fails it
        (and its ``timeout`` too, unless ``on_timeout="skip"``)."""
        spec = {"approvers": approvers, "timeout": timeout, "on_timeout": on_timeout}
        return self._waiting(id, "approval", spec, after, None)

    def sleep(self, id: str, seconds: float | None = None, until: str | None = None, after: Sequence[str] = ()) -> str:
        """Add a node that succeeds ``seconds`` after it is reached (or at ISO time ``until``), holding no worker."""
        return self._waiting(id, "sleep", {"seconds": seconds, "until": until}, after, None)

    def _waiting(
        self, id: str, kind: str, spec: dict[str, Any], after: Sequence[str], params: Mapping[str, Any] | None
    ) -> str:
        data = {"id": id, kind: {k: v for k, v in spec.items() if v is not None}, "after": list(after)}
        if params:
            data["params"] = dict(params)
        self.add(_parse_node(data, self.source, len(self.nodes)))
        return id

    def add(self, node: Node) -> None:
        if node.id in self.nodes:
            raise DagError(self.source, "duplicate node id", node=node.id)
        self.nodes[node.id] = node

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "nodes": [n.to_json() for n in self.nodes.values()]}

    @classmethod
    def from_json(cls, data: Any, source: str = "<dag>") -> Dag:
        """Build from parsed YAML/JSON; ``MalformedDagError`` names the field at fault."""
        if not isinstance(data, Mapping):
            raise MalformedDagError(source, "top level must be a mapping with 'name' and 'nodes'")
        unknown = set(data) - {"name", "nodes"}
        if unknown:
            raise MalformedDagError(source, f"unknown top-level field(s) {', '.join(sorted(map(str, unknown)))}")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise MalformedDagError(source, "'name' must be a non-empty string")
        nodes = data.get("nodes")
        if not isinstance(nodes, list) or not nodes:
            raise MalformedDagError(source, "'nodes' must be a non-empty list")
        dag = cls(name=name, source=source)
        for index, raw in enumerate(nodes):
            dag.add(_parse_node(raw, source, index))
        return dag

    @classmethod
    def from_text(cls, text: str, source: str = "<dag>", max_bytes: int = MAX_DAG_BYTES) -> Dag:
        """Parse a YAML or JSON document (JSON when ``source`` ends in ``.json``) of at most ``max_bytes``."""
        size = len(text.encode())
        if size > max_bytes:
            raise DagTooLargeError(source, f"the document is {size} bytes, over the limit of {max_bytes}")
        try:
            # YAML 1.2 in Rust: 15x faster than libyaml through PyYAML on a 10k-node DAG, plain
            # data only (no tags that build objects), aliases expanded under a bound
            data = json.loads(text) if source.endswith(".json") else yaml_rs.loads(text)
        except (yaml_rs.YAMLDecodeError, json.JSONDecodeError) as exc:
            kind = "JSON" if source.endswith(".json") else "YAML"
            raise MalformedDagError(source, f"not valid {kind}: {' '.join(str(exc).split())}") from None
        return cls.from_json(data, source)

    @classmethod
    def load(cls, path: str | Path, max_bytes: int = MAX_DAG_BYTES) -> Dag:
        """Read a YAML (``.yaml``/``.yml``) or JSON (``.json``) DAG file of at most ``max_bytes``."""
        path = Path(path)
        try:
            size = path.stat().st_size
            if size > max_bytes:  # refused before it is read into memory
                raise DagTooLargeError(str(path), f"the document is {size} bytes, over the limit of {max_bytes}")
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else exc
            raise MalformedDagError(str(path), f"cannot read: {reason}") from None
        return cls.from_text(text, str(path), max_bytes)


def _parse_node(raw: Any, source: str, index: int) -> Node:
    if not isinstance(raw, Mapping):
        raise MalformedDagError(source, f"nodes[{index}] must be a mapping")
    node_id = raw.get("id")
    if not isinstance(node_id, str) or not NODE_ID.match(node_id):
        raise MalformedDagError(
            source, f"nodes[{index}]: 'id' must be a string matching {NODE_ID.pattern}, got {node_id!r}"
        )

    def bad(problem: str) -> MalformedDagError:
        return MalformedDagError(source, problem, node=node_id)

    unknown = set(raw) - NODE_FIELDS
    if unknown:
        raise bad(f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    kinds = [kind for kind in KINDS if kind in raw]
    wait = None
    if kinds:
        if len(kinds) > 1 or set(raw) & AGENT_FIELDS:
            raise bad(f"give one of 'agent', {', '.join(repr(k) for k in KINDS)}: a waiting node calls no agent")
        parsed = parse(kinds[0], raw[kinds[0]])
        if isinstance(parsed, str):
            raise bad(parsed)
        wait = parsed
    agent = raw.get("agent", "" if wait else None)
    if wait is None and (not isinstance(agent, str) or not agent):
        raise bad("'agent' must be a non-empty string")
    params = raw.get("params") or {}
    if not isinstance(params, Mapping):
        raise bad("'params' must be a mapping")
    after = raw.get("after") or []
    if isinstance(after, str):
        after = [after]
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise bad("'after' must be a list of node ids")
    foreach = raw.get("foreach")
    if foreach is not None and not isinstance(foreach, str | list):
        raise bad("'foreach' must be a node id or a list")
    timeout = raw.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
        raise bad("'timeout' must be a positive number of seconds")
    if timeout is not None and timeout > MAX_TIMEOUT:
        raise bad(f"'timeout' of {timeout:g} s is over the limit of {MAX_TIMEOUT:g} s")
    retries = raw.get("retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
        raise bad("'retries' must be a whole number ≥ 0")
    fallback = raw.get("fallback")
    if fallback is not None and not isinstance(fallback, str):
        raise bad("'fallback' must be an agent name")
    limits = raw.get("limits") or []
    if isinstance(limits, str):
        limits = [limits]
    if not isinstance(limits, list) or not all(isinstance(name, str) and name for name in limits):
        raise bad("'limits' must be a list of limit names")
    priority = raw.get("priority")
    if priority is not None and (isinstance(priority, bool) or priority not in PRIORITIES):
        raise bad("'priority' must be a whole number from 0 to 9 (higher goes first)")
    return Node(
        id=node_id,
        agent=agent,
        params=dict(params),
        after=tuple(dict.fromkeys(after)),
        foreach=foreach,
        timeout=float(timeout) if timeout is not None else None,
        retries=retries,
        fallback=fallback,
        limits=tuple(dict.fromkeys(limits)),
        priority=priority,
        wait=wait,
    )
