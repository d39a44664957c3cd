"""Reading and writing the history database (SQLite by default, any SQLAlchemy URL)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, create_engine, delete, event, select
from sqlalchemy.orm import Session

from ..settings import Settings
from ..status import TERMINAL, NodeStatus, RunStatus
from .models import Base, NodeRecord, RunRecord, Transition

_ENGINES: dict[str, Engine] = {}


def _write_ahead_log(connection: Any, record: Any) -> None:
    """SQLite in WAL mode: a commit appends the pages it changed to the log and syncs that once,
    instead of writing each page twice (rollback journal, then database) and creating and
    deleting the journal file. Under load the recorder's rollback-journal commits wrote about
    5.7 MB/s and slowed every fsync of the Redis beside it. Readers (the CLI) no longer block
    the writer either. ``synchronous=FULL`` keeps a commit durable before the recorder acks."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


class HistoryStore:
    """The history database; tables are created on first use."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = create_engine(url, pool_pre_ping=True)
            if engine.dialect.name == "sqlite":
                event.listen(engine, "connect", _write_ahead_log)
            Base.metadata.create_all(engine)
        self.engine = engine

    def close(self) -> None:
        """Close the pooled connections of this URL (the next use opens new ones)."""
        self.engine.dispose()

    @classmethod
    def from_settings(cls, settings: Settings) -> HistoryStore:
        return cls(settings.history_url)

    def apply(self, entries: Iterable[tuple[str, dict[str, str]]], runs: dict[str, dict[str, str]]) -> int:
        """Record stream ``entries`` (id, fields) in one transaction; skip ones already recorded.

        ``runs`` carries what the stream does not: name, DAG and submit time per run id.
        Returns how many entries were new.
        """
        entries = list(entries)
        # One query each for what the batch touches, then one flush at commit: the recorder spent
        # most of its time in a SELECT per entry (autoflush before each) when it looked rows up one by one.
        with Session(self.engine, autoflush=False) as session, session.begin():
            seen: set[str] = set()
            for chunk in _chunks([e[0] for e in entries]):
                seen.update(session.scalars(select(Transition.stream_id).where(Transition.stream_id.in_(chunk))))
            fresh = []
            for stream_id, fields in entries:
                if stream_id not in seen:
                    seen.add(stream_id)
                    fresh.append((stream_id, fields))
            batch = _Batch.load(session, fresh)
            for stream_id, fields in fresh:
                self._apply_one(session, batch, stream_id, fields, runs.get(fields["run"], {}))
        return len(fresh)

    def _apply_one(
        self, session: Session, batch: _Batch, stream_id: str, fields: dict[str, str], run_info: dict[str, str]
    ) -> None:
        run_id, node_id, status, at = fields["run"], fields["node"], fields["status"], fields["at"]
        attempt = int(fields["attempt"]) if "attempt" in fields else None
        session.add(
            Transition(
                stream_id=stream_id,
                run_id=run_id,
                node_id=node_id,
                status=status,
                at=at,
                attempt=attempt,
                worker=fields.get("worker"),
                error=fields.get("error"),
            )
        )
        run = batch.runs.get(run_id)
        if run is None:
            run = batch.runs[run_id] = RunRecord(
                run_id=run_id,
                status=RunStatus.RUNNING.value,
                name=run_info.get("name"),
                dag=run_info.get("dag"),
                submitted_at=run_info.get("submitted_at") or at,
            )
            session.add(run)
            self._add_nodes(session, batch, run_id, run.dag)
        if not node_id:
            run.status = status
            if status in TERMINAL:
                run.finished_at = at
                run.error = run_info.get("error") or run.error
            return
        node = batch.nodes.get((run_id, node_id))
        if node is None:
            node = batch.nodes[run_id, node_id] = NodeRecord(
                run_id=run_id, node_id=node_id, status=NodeStatus.PENDING.value, attempts=0
            )
            session.add(node)
        if status == NodeStatus.RUNNING:
            node.status, node.started_at = NodeStatus.RUNNING.value, at
            node.attempts = max(node.attempts or 0, attempt or 0)
            node.worker = fields.get("worker")
        elif status == "retrying":
            node.status, node.error = NodeStatus.QUEUED.value, fields.get("error")
        elif status == NodeStatus.SUCCEEDED:
            node.status, node.finished_at = NodeStatus.SUCCEEDED.value, at
            node.result = fields.get("result", "")
        elif status == NodeStatus.FAILED:
            node.status, node.finished_at, node.error = NodeStatus.FAILED.value, at, fields.get("error")
        else:
            node.status = status

    @staticmethod
    def _add_nodes(session: Session, batch: _Batch, run_id: str, dag_json: str | None) -> None:
        if not dag_json:
            return
        for node in json.loads(dag_json)["nodes"]:
            record = NodeRecord(run_id=run_id, node_id=node["id"], agent=node["agent"], status="pending", attempts=0)
            batch.nodes.setdefault((run_id, node["id"]), record)
            session.add(record)

    def run(self, run_id: str) -> dict[str, Any] | None:
        """The run document as recorded, or None."""
        with Session(self.engine) as session:
            run = session.get(RunRecord, run_id)
            if run is None:
                return None
            nodes = session.scalars(select(NodeRecord).where(NodeRecord.run_id == run_id)).all()
            order = [n["id"] for n in json.loads(run.dag)["nodes"]] if run.dag else []
            rank = {nid: i for i, nid in enumerate(order)}
            return {
                "run_id": run.run_id,
                "name": run.name,
                "status": run.status,
                "submitted_at": run.submitted_at,
                "finished_at": run.finished_at,
                "error": run.error,
                "warnings": [],
                "nodes": {
                    n.node_id: {
                        "status": n.status,
                        "agent": n.agent,
                        "attempts": n.attempts,
                        "worker": n.worker,
                        "started_at": n.started_at,
                        "finished_at": n.finished_at,
                        "result": _decode(n.result),
                        "error": n.error,
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
        with Session(self.engine) as session, session.begin():
            session.execute(delete(Transition).where(Transition.run_id.in_(old)))
            session.execute(delete(NodeRecord).where(NodeRecord.run_id.in_(old)))
            gone = cast(CursorResult[Any], session.execute(delete(RunRecord).where(RunRecord.run_id.in_(old))))
            return int(gone.rowcount or 0)

    def dag(self, run_id: str) -> str | None:
        with Session(self.engine) as session:
            run = session.get(RunRecord, run_id)
            return run.dag if run is not None else None

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest runs, newest first, without their nodes."""
        with Session(self.engine) as session:
            rows = session.scalars(select(RunRecord).order_by(RunRecord.submitted_at.desc()).limit(limit)).all()
            return [
                {
                    "run_id": r.run_id,
                    "name": r.name,
                    "status": r.status,
                    "submitted_at": r.submitted_at,
                    "finished_at": r.finished_at,
                }
                for r in rows
            ]


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
class _Batch:
    """The run and node rows one batch of entries touches, read up front (and the new ones added)."""

    runs: dict[str, RunRecord]
    nodes: dict[tuple[str, str], NodeRecord]

    @classmethod
    def load(cls, session: Session, entries: list[tuple[str, dict[str, str]]]) -> _Batch:
        run_ids = sorted({fields["run"] for _, fields in entries})
        runs: dict[str, RunRecord] = {}
        nodes: dict[tuple[str, str], NodeRecord] = {}
        for chunk in _chunks(run_ids):  # by the primary key's first column: an index range per run
            runs.update((r.run_id, r) for r in session.scalars(select(RunRecord).where(RunRecord.run_id.in_(chunk))))
            query = select(NodeRecord).where(NodeRecord.run_id.in_(chunk))
            nodes.update(((n.run_id, n.node_id), n) for n in session.scalars(query))
        return cls(runs, nodes)
