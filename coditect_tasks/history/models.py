"""SQLAlchemy models of the history. Timestamps are ISO-8601 UTC strings with
microseconds, exactly as the engine wrote them (lossless on every database)."""

from __future__ import annotations

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..keys import HISTORY_CAP

#: Bytes of a node result the transition stream carries; the recorder writes the whole result.
RESULT_CAP = HISTORY_CAP


class Base(DeclarativeBase):
    pass


class RunRecord(Base):
    __tablename__ = "coditect_runs"
    #: (also made on upgrade: ``upgrade.ADDED_INDEXES``) the console's outcomes per minute and its
    #: runs of one status, newest first
    __table_args__ = (
        Index("ix_coditect_runs_finished_at", "finished_at"),
        Index("ix_coditect_runs_status_submitted", "status", "submitted_at"),
    )

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    submitted_at: Mapped[str | None] = mapped_column(String(40), index=True)
    finished_at: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(Text)
    dag: Mapped[str | None] = mapped_column(Text)
    #: The run this one retries (``DagRun.retry``), or that spawned it (``dag.spawn``); added after
    #: the first release (``history.upgrade``).
    parent_run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    #: The node of ``parent_run_id`` that spawned this run (None for a retry).
    parent_node: Mapped[str | None] = mapped_column(String(128))
    #: The schedule that started this run and the fire time it is for (ISO-8601, UTC).
    schedule: Mapped[str | None] = mapped_column(String(128))
    fire_time: Mapped[str | None] = mapped_column(String(40))
    #: The versions a ramp pinned its agents to (JSON: agent → version, "" unversioned).
    versions: Mapped[str | None] = mapped_column(Text)


class NodeRecord(Base):
    __tablename__ = "coditect_nodes"
    #: (also made on upgrade) nodes ended per minute, and an agent's latest nodes
    __table_args__ = (
        Index("ix_coditect_nodes_finished_at", "finished_at"),
        Index("ix_coditect_nodes_agent_finished", "agent", "finished_at"),
        Index("ix_coditect_nodes_status_queued", "status", "queued_at"),
    )

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    agent: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[str | None] = mapped_column(String(40))
    finished_at: Mapped[str | None] = mapped_column(String(40))
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    #: When it was last put in line (queued, retried, requeued, rerouted): the overview's oldest
    #: queued node per agent; added after the first release (``history.upgrade``).
    queued_at: Mapped[str | None] = mapped_column(String(40))


class Transition(Base):
    """One entry of the transition stream; ``stream_id`` makes replays idempotent."""

    __tablename__ = "coditect_transitions"
    __table_args__ = (Index("ix_transitions_run", "run_id", "stream_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stream_id: Mapped[str] = mapped_column(String(32), unique=True)
    run_id: Mapped[str] = mapped_column(String(64))
    node_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[str] = mapped_column(String(40))
    attempt: Mapped[int | None] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    #: What the transition says beyond its status, as JSON (``engine.events.Event.detail``).
    detail: Mapped[str | None] = mapped_column(Text)
