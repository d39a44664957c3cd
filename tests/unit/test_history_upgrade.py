"""A history database written by the release before ``parent_run_id`` gains the column on first use
and keeps its rows (a real SQLite file; the ALTER TABLE is the same SQL on PostgreSQL)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import inspect

from coditect_tasks.history.store import HistoryStore

OLD_SCHEMA = """
CREATE TABLE coditect_runs (run_id VARCHAR(64) PRIMARY KEY, name VARCHAR(255), status VARCHAR(16),
  submitted_at VARCHAR(40), finished_at VARCHAR(40), error TEXT, dag TEXT);
INSERT INTO coditect_runs VALUES ('old', 'before', 'succeeded', '2026-01-01T00:00:00+00:00',
  '2026-01-01T00:00:01+00:00', NULL, '{"name": "before", "nodes": [{"id": "a", "agent": "echo"}]}');
"""


def test_an_old_history_database_gains_parent_run_id_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    store = HistoryStore(f"sqlite:///{path}")
    try:
        assert "parent_run_id" in {c["name"] for c in inspect(store.db).get_columns("coditect_runs")}
        doc = store.run("old")
        assert doc is not None
        assert (doc["name"], doc["status"], doc["parent_run_id"]) == ("before", "succeeded", None)
        assert [r["run_id"] for r in store.runs(before="2026-01-02")] == ["old"]
        assert store.runs(before="2026-01-01") == []
    finally:
        store.close()
