"""The run document (the README's run JSON) and what is read for it, with no I/O of its own: the
reads are queued on the pipeline a transport hands in, the replies turned into the document here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .. import keys
from ..agents import versioned
from ..dag.waits import KINDS
from ..errors import RunFailedError, RunStateError, RunTimeoutError
from ..status import TERMINAL, NodeStatus, RunStatus, public


def run_rows(transport: Any, run_ids: list[str]) -> Any:
    pipe = transport.redis.pipeline(transaction=False)
    for run_id in run_ids:
        pipe.hmget(keys.run_prefix(run_id) + "run", "name", "status", "submitted_at", "finished_at")
    return pipe.execute()


def live_reads(transport: Any, run_id: str) -> Any:
    """The reads ``live_document`` needs, in one round trip."""
    p = keys.run_prefix(run_id)
    pipe = transport.redis.pipeline(transaction=False)
    pipe.hgetall(p + "run")
    for field in keys.NODE_FIELDS:
        pipe.hgetall(p + field)
    pipe.get(p + "doc")
    return pipe.execute()


def live_document(run_id: str, replies: list[Any]) -> dict[str, Any] | None:
    """The run document from the replies of ``live_reads``; None if the live state is gone. A
    retired run's DAG and node hashes are in one JSON string (``doc``, retire.lua)."""
    run, *tables, packed = replies
    if run and packed:
        retired = json.loads(packed)  # {v: 1, dag, nodes: node → its NODE_FIELDS values in order}
        run = {**run, "dag": retired["dag"]}
        rows = retired["nodes"].items()
        tables = [
            {nid: row[i] for nid, row in rows if i < len(row) and row[i] is not None}
            for i in range(len(keys.NODE_FIELDS))
        ]
    if not run or "dag" not in run:
        return None
    by_field = dict(zip(keys.NODE_FIELDS, tables, strict=True))
    nodes = {}
    for node in json.loads(run["dag"])["nodes"]:
        nid = node["id"]
        result = by_field["result"].get(nid)
        nodes[nid] = {
            "status": by_field["status"].get(nid, NodeStatus.PENDING.value),
            "agent": by_field["routed"].get(nid, node.get("agent")),  # none: a waiting node
            "kind": next((kind for kind in KINDS if kind in node), "agent"),
            "attempts": int(by_field["attempts"].get(nid, 0)),
            "worker": by_field["worker"].get(nid),
            "started_at": by_field["started"].get(nid),
            "finished_at": by_field["finished"].get(nid),
            "result": json.loads(result) if result is not None else None,
            "error": by_field["error"].get(nid),
        }
        if (throttled := by_field["throttled"].get(nid)) is not None:
            nodes[nid]["throttled"] = throttled_detail(throttled)
        if (awaits := by_field["awaits"].get(nid)) is not None:
            event, _, key = awaits.partition("|")
            nodes[nid]["awaits"] = {"event": event, "key": key}
        if (approvals := by_field["approvals"].get(nid)) is not None:
            nodes[nid]["approvals"] = json.loads(approvals)
        if (children := by_field["children"].get(nid)) is not None:
            nodes[nid]["children"] = json.loads(children)
    status = run.get("status", RunStatus.RUNNING.value)
    warnings = []
    if status == RunStatus.FAILING:
        running = sum(1 for n in nodes.values() if n["status"] == NodeStatus.RUNNING)
        warnings.append(f"{run.get('error')}; waiting for {running} running node(s) to finish")
    return {
        "run_id": run_id,
        "name": run.get("name"),
        "parent_run_id": run.get("parent") or None,
        "parent_node": run.get("parent_node") or None,
        "schedule": run.get("schedule") or None,
        "fire_time": run.get("fire_time") or None,
        "versions": json.loads(run["versions"]) if run.get("versions") else {},
        "status": public(status),
        "submitted_at": run.get("submitted_at"),
        "finished_at": run.get("finished_at"),
        "error": run.get("error"),
        "warnings": warnings,
        "nodes": nodes,
    }


def throttled_detail(raw: str) -> dict[str, str]:
    """What a queued node waits for, from its ``throttled`` field ('<limit>|<since>|<key>'): the
    limit, and the key value (the repo of ``key="repo"``; '' for an unkeyed limit)."""
    limit, _, rest = raw.partition("|")
    return {"limit": limit, "key": rest.partition("|")[2]}


def stall_warnings(doc: dict[str, Any], live: Mapping[str, Any]) -> None:
    """Add to ``doc``'s warnings every queued node whose agent (at the version the run is pinned to)
    has no worker in ``live`` (agent key → workers)."""
    pins = doc.get("versions") or {}
    for nid, node in doc["nodes"].items():
        key = versioned(node["agent"], pins.get(node["agent"]) or None) if node["agent"] else node["agent"]
        if node["status"] == NodeStatus.QUEUED and not live.get(key):
            at = f" at version {pins[node['agent']]}" if key != node["agent"] else ""
            doc["warnings"].append(f"node {nid!r} waits for agent {node['agent']!r}{at}, which has no live worker")


def outcome(run_id: str, state: str, doc: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """What ``result`` gives for a run in ``state`` with document ``doc``: its results, or an error."""
    if state == RunStatus.SUCCEEDED:
        return results(doc)
    if state not in TERMINAL:
        raise RunTimeoutError(run_id, state, timeout or 0.0)
    failed = {nid: n["error"] for nid, n in doc["nodes"].items() if n["status"] == NodeStatus.FAILED}
    raise RunFailedError(run_id, state, failed)


def results(doc: dict[str, Any]) -> dict[str, Any]:
    """Results of the nodes that succeeded, by node id."""
    return {nid: n["result"] for nid, n in doc["nodes"].items() if n["status"] == NodeStatus.SUCCEEDED}


def retry_plan(run_id: str, doc: dict[str, Any]) -> dict[str, str]:
    """Node → result (JSON) of the nodes a retry of run ``run_id`` (document ``doc``) keeps;
    ``RunStateError`` if the run cannot be retried (yet)."""
    if doc["status"] not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise RunStateError(run_id, f"is {doc['status']}; only a failed or cancelled run can be retried")
    reused = {
        nid: json.dumps(node["result"], separators=(",", ":"))
        for nid, node in doc["nodes"].items()
        if node["status"] == NodeStatus.SUCCEEDED
    }
    if len(reused) == len(doc["nodes"]):
        raise RunStateError(run_id, "every node succeeded; there is nothing to retry")
    if running := [nid for nid, node in doc["nodes"].items() if node["status"] == NodeStatus.RUNNING]:
        # a cancel lets running nodes finish: retrying now would run them twice at once
        raise RunStateError(run_id, f"node(s) {', '.join(running[:5])} still run; retry once they end")
    return reused
