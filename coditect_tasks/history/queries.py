"""What the console and ``GET /api/runs`` ask of the history: runs by filter, counts per status,
outcomes per minute, an agent's latest nodes. Each query is one indexed SQL statement, so the
pages stay fast with a hundred thousand runs recorded (``examples/bench_console.py``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from ..errors import InvalidArgumentError
from ..status import RunStatus
from .models import NodeRecord, RunRecord

#: The run states a filter takes (a run waiting for something is ``running``).
STATES = tuple(s.value for s in (RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED))


@dataclass(frozen=True)
class RunQuery:
    """Which runs: a status, an exact name, a run id prefix or a part of the name (``search``),
    and a window of submit times (ISO-8601 UTC, ``since`` included, ``until`` not)."""

    status: str | None = None
    name: str | None = None
    search: str | None = None
    since: str | None = None
    until: str | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATES:
            raise InvalidArgumentError(f"status {self.status!r} is not one of {', '.join(STATES)}")
        for label, value in (("since", self.since), ("until", self.until)):
            if value is not None:
                object.__setattr__(self, label, _iso(label, value))

    def any_status(self) -> RunQuery:
        return replace(self, status=None)

    def matches(self, row: dict[str, Any]) -> bool:
        """Whether a run's row (live, from Redis) passes the filter as the SQL below would."""
        submitted = row.get("submitted_at") or ""
        return (
            (self.status is None or row["status"] == self.status)
            and (self.name is None or row.get("name") == self.name)
            and (
                not self.search
                or row["run_id"].startswith(self.search)
                or self.search.lower() in (row.get("name") or "").lower()
            )
            and (self.since is None or submitted >= self.since)
            and (self.until is None or submitted < self.until)
        )

    def where(self, query: Select[Any]) -> Select[Any]:
        if self.status is not None:
            query = query.where(RunRecord.status == self.status)
        if self.name is not None:
            query = query.where(RunRecord.name == self.name)
        if self.search:  # an id by its prefix, exactly; a name by a part of it, in any (ASCII) case
            pattern = self.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(
                or_(
                    func.substr(RunRecord.run_id, 1, len(self.search)) == self.search,
                    func.lower(RunRecord.name).like(f"%{pattern.lower()}%", escape="\\"),
                )
            )
        if self.since is not None:
            query = query.where(RunRecord.submitted_at >= self.since)
        if self.until is not None:
            query = query.where(RunRecord.submitted_at < self.until)
        return query


def _iso(label: str, value: str) -> str:
    """``value`` as the history stores times (ISO-8601 UTC with microseconds)."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgumentError(f"{label} {value!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def runs(session: Session, query: RunQuery, limit: int, before: str | None) -> list[dict[str, Any]]:
    """The newest ``limit`` runs that pass ``query``, submitted before ``before`` (an ISO time) if given."""
    statement = query.where(select(RunRecord)).order_by(RunRecord.submitted_at.desc()).limit(limit)
    if before is not None:
        statement = statement.where(RunRecord.submitted_at < before)
    return [
        {
            "run_id": r.run_id,
            "name": r.name,
            "status": r.status,
            "submitted_at": r.submitted_at,
            "finished_at": r.finished_at,
        }
        for r in session.scalars(statement)
    ]


def counts(session: Session, query: RunQuery) -> dict[str, int]:
    """Recorded runs per status among those ``query`` passes, whatever its status."""
    counted = cast(Select[Any], select(RunRecord.status, func.count()))
    statement = query.any_status().where(counted).group_by(RunRecord.status)
    found = {status: 0 for status in STATES}
    for status, count in session.execute(statement):
        found[str(status)] = int(count)
    return found


def per_minute(session: Session, minutes: int, now: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
    """Runs and nodes that ended in each of the last ``minutes`` minutes, by outcome: the
    overview's throughput charts. Every minute is listed, the quiet ones with zeros."""
    end = (now or datetime.now(UTC)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=minutes)
    labels = [(start + timedelta(minutes=i)).isoformat()[:16] for i in range(minutes)]
    charts = {}
    for chart, table in (("runs", RunRecord), ("nodes", NodeRecord)):
        minute = func.substr(table.finished_at, 1, 16)
        statement = (
            select(minute, table.status, func.count())
            .where(table.finished_at >= start.isoformat(timespec="microseconds"))
            .group_by(minute, table.status)
        )
        table_counts: dict[str, dict[str, int]] = {label: {} for label in labels}
        for at, status, count in session.execute(statement):
            if at in table_counts:
                table_counts[at][str(status)] = int(count)
        charts[chart] = [
            {"minute": label, "succeeded": c.get("succeeded", 0), "failed": c.get("failed", 0)}
            for label, c in table_counts.items()
        ]
    return charts


#: Node statuses (as recorded) of a node in line for a worker.
IN_LINE = ("queued", "requeued", "rerouted")


def oldest_queued(session: Session) -> dict[str, str]:
    """Agent → when its longest-waiting queued node was put in line: an index range per status."""
    statement = (
        select(NodeRecord.agent, func.min(NodeRecord.queued_at))
        .where(NodeRecord.status.in_(IN_LINE), NodeRecord.queued_at.is_not(None))
        .group_by(NodeRecord.agent)
    )
    return {str(agent): str(at) for agent, at in session.execute(statement) if agent is not None}


def agent_nodes(session: Session, agent: str, limit: int) -> list[dict[str, Any]]:
    """The latest ``limit`` recorded nodes of ``agent`` that ended, newest first."""
    statement = (
        select(NodeRecord)
        .where(NodeRecord.agent == agent, NodeRecord.finished_at.is_not(None))
        .order_by(NodeRecord.finished_at.desc())
        .limit(limit)
    )
    return [
        {
            "run_id": n.run_id,
            "node_id": n.node_id,
            "status": n.status,
            "attempts": n.attempts,
            "worker": n.worker,
            "started_at": n.started_at,
            "finished_at": n.finished_at,
            "error": n.error,
        }
        for n in session.scalars(statement)
    ]


#: A query that passes every run.
EVERY = RunQuery()
