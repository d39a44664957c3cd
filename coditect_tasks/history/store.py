"""Reading and writing the history database (SQLite by default, any SQLAlchemy URL)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    Table,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from ..dag.waits import KINDS
from ..settings import Settings
from ..status import TERMINAL, NodeStatus, RunStatus
from . import queries
from .models import Base, NodeRecord, RunRecord, Transition
from .queries import EVERY, RunQuery
from .upgrade import upgrade

_DATABASES: dict[str, Engine] = {}  # SQLAlchemy engines by URL


def _write_ahead_log(connection: Any, record: Any) -> None:
    """SQLite in WAL mode: a commit appends the pages it changed to the log and syncs that once,
    instead of writing each page twice (rollback journal, then database) and creating and
    deleting the journal file. Under load the recorder's rollback-journal commits wrote about
    5.7 MB/s and slowed every fsync of the Redis beside it. Readers (the CLI) no longer block
    the writer either. ``synchronous=FULL`` keeps a commit durable before the recorder acks.
    The indexes are keyed by random run ids, so each insert lands on a random page: a 64 MB page
    cache (SQLite's default is 2 MB) keeps their upper levels in memory as the database grows."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


class HistoryStore:
    """The history database; tables are created on first use."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = _DATABASES.get(url)
        if engine is None:
            engine = _DATABASES[url] = create_engine(url, pool_pre_ping=True)
            if engine.dialect.name == "sqlite":
                event.listen(engine, "connect", _write_ahead_log)
            Base.metadata.create_all(engine)
            upgrade(engine)
        self.db = engine

    def close(self) -> None:
        """Close the pooled connections of this URL (the next use opens new ones)."""
        self.db.dispose()

    @classmethod
    def from_settings(cls, settings: Settings) -> HistoryStore:
        return cls(settings.history_url)

    def apply(self, entries: Iterable[tuple[str, dict[str, str]]], runs: dict[str, dict[str, str]]) -> int:
        """Record stream ``entries`` (id, fields) in one transaction; skip ones already recorded.

        ``runs`` carries what the stream does not: name, DAG and submit time per run id.
        Returns how many entries were new.
        """
        entries = list(entries)
        with self.db.begin() as conn:
            seen: set[str] = set()
            for chunk in _chunks([e[0] for e in entries]):
                seen.update(conn.scalars(select(Transition.stream_id).where(Transition.stream_id.in_(chunk))))
            fresh = []
            for stream_id, fields in entries:
                if stream_id not in seen:
                    seen.add(stream_id)
                    fresh.append((stream_id, fields))
            batch = _Batch.load(conn, fresh)
            for stream_id, fields in fresh:
                batch.apply(stream_id, fields, runs.get(fields["run"], {}))
            batch.write(conn)
        return len(fresh)

    def run(self, run_id: str) -> dict[str, Any] | None:
        """The run document as recorded, or None."""
        with Session(self.db) as session:
            run = session.get(RunRecord, run_id)
            if run is None:
                return None
            nodes = session.scalars(select(NodeRecord).where(NodeRecord.run_id == run_id)).all()
            specs = json.loads(run.dag)["nodes"] if run.dag else []
            rank = {spec["id"]: i for i, spec in enumerate(specs)}
            kinds = {spec["id"]: next((kind for kind in KINDS if kind in spec), "agent") for spec in specs}
            spawned = session.execute(
                select(RunRecord.parent_node, RunRecord.run_id)
                .where(RunRecord.parent_run_id == run_id, RunRecord.parent_node.is_not(None))
                .order_by(RunRecord.submitted_at)
            ).all()
            children: dict[str, list[str]] = {}
            for node, child in spawned:
                children.setdefault(str(node), []).append(child)
            return {
                "run_id": run.run_id,
                "name": run.name,
                "parent_run_id": run.parent_run_id,
                "parent_node": run.parent_node,
                "schedule": run.schedule,
                "fire_time": run.fire_time,
                "versions": json.loads(run.versions) if run.versions else {},
                "status": run.status,
                "submitted_at": run.submitted_at,
                "finished_at": run.finished_at,
                "error": run.error,
                "warnings": [],
                "nodes": {
                    n.node_id: {
                        "status": n.status,
                        "agent": n.agent,
                        "kind": kinds.get(n.node_id, "agent"),
                        "attempts": n.attempts,
                        "worker": n.worker,
                        "started_at": n.started_at,
                        "finished_at": n.finished_at,
                        "result": _decode(n.result),
                        "error": n.error,
                        **({"children": children[n.node_id]} if n.node_id in children else {}),
                    }
                    for n in sorted(nodes, key=lambda n: rank.get(n.node_id, len(rank)))
                },
            }

    def prune(self, finished_before: str) -> int:
        """Delete the runs that finished before ``finished_before`` (ISO-8601 UTC, as stored), with
        their nodes and transitions; runs still going are kept. Returns how many runs went."""
        old = select(RunRecord.run_id).where(
            RunRecord.finished_at < finished_before, RunRecord.status.in_([str(s) for s in TERMINAL])
        )
        with Session(self.db) as session, session.begin():
            session.execute(delete(Transition).where(Transition.run_id.in_(old)))
            session.execute(delete(NodeRecord).where(NodeRecord.run_id.in_(old)))
            gone = cast(CursorResult[Any], session.execute(delete(RunRecord).where(RunRecord.run_id.in_(old))))
            return int(gone.rowcount or 0)

    def delete_runs(self, run_ids: list[str]) -> int:
        """Delete these runs with their nodes and transitions (``coditect-tasks chaos``'s own, after
        it); how many runs went."""
        with Session(self.db) as session, session.begin():
            session.execute(delete(Transition).where(Transition.run_id.in_(run_ids)))
            session.execute(delete(NodeRecord).where(NodeRecord.run_id.in_(run_ids)))
            gone = cast(CursorResult[Any], session.execute(delete(RunRecord).where(RunRecord.run_id.in_(run_ids))))
            return int(gone.rowcount or 0)

    def transitions(self, run_id: str) -> list[dict[str, Any]]:
        """The run's recorded transitions in stream order, as the history stream held them."""
        with Session(self.db) as session:
            rows = session.scalars(select(Transition).where(Transition.run_id == run_id)).all()
            return [
                {
                    "id": t.stream_id,
                    "run": t.run_id,
                    "node": t.node_id,
                    "status": t.status,
                    "at": t.at,
                    "attempt": t.attempt,
                    "worker": t.worker,
                    "error": t.error,
                    "detail": t.detail,
                }
                for t in rows
            ]

    def dag(self, run_id: str) -> str | None:
        with Session(self.db) as session:
            run = session.get(RunRecord, run_id)
            return run.dag if run is not None else None

    def runs(self, limit: int = 50, before: str | None = None, query: RunQuery = EVERY) -> list[dict[str, Any]]:
        """The latest runs ``query`` passes (submitted before ``before``, an ISO time, if given),
        newest first, without their nodes."""
        with Session(self.db) as session:
            return queries.runs(session, query, limit, before)

    def counts(self, query: RunQuery = EVERY) -> dict[str, int]:
        """Recorded runs per status among those ``query`` passes, whatever its status."""
        with Session(self.db) as session:
            return queries.counts(session, query)

    def per_minute(self, minutes: int = 60) -> dict[str, list[dict[str, Any]]]:
        """Runs and nodes that ended in each of the last ``minutes`` minutes, by outcome."""
        with Session(self.db) as session:
            return queries.per_minute(session, minutes)

    def oldest_queued(self) -> dict[str, str]:
        """Agent → when its longest-waiting queued node was put in line (as recorded)."""
        with Session(self.db) as session:
            return queries.oldest_queued(session)

    def agent_nodes(self, agent: str, limit: int = 50) -> list[dict[str, Any]]:
        """The latest nodes of ``agent`` that ended, newest first."""
        with Session(self.db) as session:
            return queries.agent_nodes(session, agent, limit)


def _decode(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"truncated": text}  # cut at RESULT_CAP bytes (its live state was gone): not JSON


#: Values per IN (…) clause: under every database's bound-parameter limit (SQLite's is 32,766).
CHUNK = 500


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


@dataclass
class _Rows:
    """The rows of one table a batch touches: the stored ones (only the columns entries read),
    the new ones, and the changes to stored ones, column by column."""

    table: Table
    key: tuple[str, ...]
    stored: dict[Any, dict[str, Any]] = field(default_factory=dict)
    new: dict[Any, dict[str, Any]] = field(default_factory=dict)
    changed: dict[Any, dict[str, Any]] = field(default_factory=dict)

    def get(self, key: Any) -> dict[str, Any] | None:
        return self.new.get(key, self.stored.get(key))

    def set(self, key: Any, **values: Any) -> None:
        if key in self.new:
            self.new[key].update(values)
        else:
            self.stored[key].update(values)
            self.changed.setdefault(key, {}).update(values)

    def write(self, conn: Connection) -> None:
        """One INSERT for the new rows, one UPDATE per set of changed columns (each an executemany)."""
        if self.new:
            conn.execute(insert(self.table), list(self.new.values()))
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for key, values in self.changed.items():
            keys = key if isinstance(key, tuple) else (key,)
            shapes.setdefault(tuple(sorted(values)), []).append(
                {**values, **{f"k_{c}": v for c, v in zip(self.key, keys, strict=True)}}
            )
        where = [self.table.c[c] == bindparam(f"k_{c}") for c in self.key]
        for rows in shapes.values():
            conn.execute(update(self.table).where(*where), rows)


class _Batch:
    """What one batch of entries does to the run and node rows, written at the end with a few
    executemany statements: the recorder spent most of its CPU in the ORM's unit of work."""

    def __init__(self) -> None:
        self.transitions: list[dict[str, Any]] = []
        self.runs = _Rows(cast(Table, RunRecord.__table__), ("run_id",))
        self.nodes = _Rows(cast(Table, NodeRecord.__table__), ("run_id", "node_id"))

    @classmethod
    def load(cls, conn: Connection, entries: list[tuple[str, dict[str, str]]]) -> _Batch:
        batch = cls()
        run_ids = sorted({fields["run"] for _, fields in entries})
        for chunk in _chunks(run_ids):  # by the primary key's first column: an index range per run
            for run_id, error in conn.execute(
                select(RunRecord.run_id, RunRecord.error).where(RunRecord.run_id.in_(chunk))
            ):
                batch.runs.stored[run_id] = {"error": error}
            query = select(NodeRecord.run_id, NodeRecord.node_id, NodeRecord.attempts).where(
                NodeRecord.run_id.in_(chunk)
            )
            for run_id, node_id, attempts in conn.execute(query):
                batch.nodes.stored[run_id, node_id] = {"attempts": attempts}
        return batch

    def apply(self, stream_id: str, fields: dict[str, str], run_info: dict[str, str]) -> None:
        run_id, node_id, status, at = fields["run"], fields["node"], fields["status"], fields["at"]
        attempt = int(fields["attempt"]) if "attempt" in fields else None
        self.transitions.append(
            {
                "stream_id": stream_id,
                "run_id": run_id,
                "node_id": node_id,
                "status": status,
                "at": at,
                "attempt": attempt,
                "worker": fields.get("worker"),
                "error": fields.get("error"),
                "detail": fields.get("detail"),
            }
        )
        if self.runs.get(run_id) is None:
            self._add_run(run_id, at, run_info)
        if not node_id:
            if status in TERMINAL:
                error = run_info.get("error") or self.runs.get(run_id)["error"]  # type: ignore[index]
                self.runs.set(run_id, status=status, finished_at=at, error=error)
            else:
                self.runs.set(run_id, status=status)
            return
        key = (run_id, node_id)
        if self.nodes.get(key) is None:
            self.nodes.new[key] = _node_row(run_id, node_id, None)
        if status == NodeStatus.RUNNING:
            attempts = max(self.nodes.get(key)["attempts"] or 0, attempt or 0)  # type: ignore[index]
            self.nodes.set(
                key, status=NodeStatus.RUNNING.value, started_at=at, attempts=attempts, worker=fields.get("worker")
            )
        elif status == NodeStatus.QUEUED:
            self.nodes.set(key, status=NodeStatus.QUEUED.value, queued_at=at)
        elif status == "retrying":
            self.nodes.set(key, status=NodeStatus.QUEUED.value, error=fields.get("error"), queued_at=at)
        elif status == "throttled":  # queued, held by a full limit
            self.nodes.set(key, status=NodeStatus.QUEUED.value)
        elif status in ("approved", "rejected"):  # a decision on a waiting approval: it waits on, or fails next
            pass
        elif status == NodeStatus.SUCCEEDED:
            self.nodes.set(key, status=NodeStatus.SUCCEEDED.value, finished_at=at, result=fields.get("result", ""))
        elif status == NodeStatus.FAILED:
            self.nodes.set(key, status=NodeStatus.FAILED.value, finished_at=at, error=fields.get("error"))
        elif status in ("requeued", "rerouted"):  # in line again: on its queue, or its fallback's
            self.nodes.set(key, status=status, queued_at=at)
        else:
            self.nodes.set(key, status=status)

    def _add_run(self, run_id: str, at: str, run_info: dict[str, str]) -> None:
        dag = run_info.get("dag")
        self.runs.new[run_id] = {
            "run_id": run_id,
            "name": run_info.get("name"),
            "status": RunStatus.RUNNING.value,
            "submitted_at": run_info.get("submitted_at") or at,
            "finished_at": None,
            "error": None,
            "dag": dag,
            "parent_run_id": run_info.get("parent"),
            "parent_node": run_info.get("parent_node"),
            "schedule": run_info.get("schedule"),
            "fire_time": run_info.get("fire_time"),
            "versions": run_info.get("versions"),
        }
        for node in json.loads(dag)["nodes"] if dag else []:
            key = (run_id, node["id"])
            if self.nodes.get(key) is None:
                self.nodes.new[key] = _node_row(run_id, node["id"], node.get("agent"))

    def write(self, conn: Connection) -> None:
        if self.transitions:
            conn.execute(insert(Transition), self.transitions)
        self.runs.write(conn)
        self.nodes.write(conn)


def _node_row(run_id: str, node_id: str, agent: str | None) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "node_id": node_id,
        "agent": agent,
        "status": NodeStatus.PENDING.value,
        "attempts": 0,
        "worker": None,
        "started_at": None,
        "finished_at": None,
        "result": None,
        "error": None,
        "queued_at": None,
    }
