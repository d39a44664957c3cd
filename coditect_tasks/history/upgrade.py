"""Upgrading a history database made by an earlier release: the columns and indexes added since."""

from __future__ import annotations

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

#: Columns added after the first release: (table, column, type). A database created before them
#: gets them on first use; they are nullable, so older rows read as None.
ADDED_COLUMNS = (
    ("coditect_runs", "parent_run_id", "VARCHAR(64)"),
    ("coditect_transitions", "detail", "TEXT"),
    ("coditect_runs", "parent_node", "VARCHAR(128)"),
    ("coditect_nodes", "queued_at", "VARCHAR(40)"),
    ("coditect_runs", "schedule", "VARCHAR(128)"),
    ("coditect_runs", "fire_time", "VARCHAR(40)"),
    ("coditect_runs", "versions", "TEXT"),
)


#: Indexes added after the first release (name, table, columns), made on upgrade for older databases.
ADDED_INDEXES = (
    ("ix_coditect_runs_parent_run_id", "coditect_runs", "parent_run_id"),  # a spawned run's children
    ("ix_coditect_runs_finished_at", "coditect_runs", "finished_at"),
    ("ix_coditect_runs_status_submitted", "coditect_runs", "status, submitted_at"),
    ("ix_coditect_nodes_finished_at", "coditect_nodes", "finished_at"),
    ("ix_coditect_nodes_agent_finished", "coditect_nodes", "agent, finished_at"),
    ("ix_coditect_nodes_status_queued", "coditect_nodes", "status, queued_at"),
)


def upgrade(engine: Engine) -> None:
    """Add what ``ADDED_COLUMNS`` and ``ADDED_INDEXES`` list to a database made before them."""
    for table, column, kind in ADDED_COLUMNS:
        if column in {c["name"] for c in inspect(engine).get_columns(table)}:
            continue
        try:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
        except (OperationalError, ProgrammingError):  # another process added it meanwhile
            if column not in {c["name"] for c in inspect(engine).get_columns(table)}:
                raise
    for name, table, columns in ADDED_INDEXES:  # (SQLite and PostgreSQL alike)
        try:
            with engine.begin() as conn:
                conn.execute(text(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})"))
        except (OperationalError, ProgrammingError, IntegrityError):  # another process made it meanwhile
            if name not in {i["name"] for i in inspect(engine).get_indexes(table)}:
                raise
