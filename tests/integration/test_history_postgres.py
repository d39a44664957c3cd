"""The history on a real PostgreSQL server (Debian's postgresql package), started by the test."""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from coditect_tasks import Dag, keys, submit
from coditect_tasks.app import create_app
from coditect_tasks.client import Client, DagRun
from coditect_tasks.engine.transitions import engine_for
from coditect_tasks.history.recorder import Recorder
from coditect_tasks.history.store import HistoryStore
from coditect_tasks.redis_server import free_port
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

from ..conftest import WorkerFactory, missing
from .test_recorder import dead_letters_keep_the_history_flowing

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("postgres")]  # one server for the module


def _as_postgres(args: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: drop to the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        missing("PostgreSQL server binaries not found (apt-get install postgresql)")
    bindir = Path(found[-1]).parent
    base = Path(tempfile.mkdtemp(prefix="coditect-pg-"))  # pytest's tmp dirs are closed to the postgres user
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
    subprocess.run(
        _as_postgres(
            [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-t", "60", "-l", str(base / "log"), "start"]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)


def test_runs_are_recorded_in_postgresql_and_read_back_after_the_live_state_is_gone(
    settings: Settings, registry: Registry, worker_factory: WorkerFactory, postgres_url: str
) -> None:
    pg_settings = dataclasses.replace(settings, database_url=postgres_url)
    app = create_app(pg_settings)
    worker_factory(["emit", "echo", "sleep"], concurrency=2)
    dag = Dag("pg")
    dag.node("plan", "emit", params={"value": ["x", "y"]})
    dag.node("each", "echo", foreach="plan", after=["plan"])
    run = submit(dag, app)
    assert run.wait(30) == "succeeded"
    live = run.status()

    recorder = Recorder(registry.client, HistoryStore.from_settings(pg_settings))
    assert recorder.drain() >= 8  # run + 2 nodes × (queued, running, succeeded) + run end
    client = engine_for(app.settings.state_url).client
    client.delete(*client.keys(keys.run_prefix(run.id) + "*"))
    assert DagRun(run.id, Client.of(app)).status() == live
    with HistoryStore(postgres_url).db.connect() as conn:
        transitions = conn.exec_driver_sql(
            "SELECT node_id, status FROM coditect_transitions WHERE run_id = %(r)s ORDER BY stream_id", {"r": run.id}
        ).all()
    assert ("each", "running") in transitions and tuple(transitions[-1]) == ("", "succeeded")
    HistoryStore(postgres_url).close()
    app.close()


def test_an_entry_postgresql_refuses_is_dead_lettered_and_the_rest_recorded(
    settings: Settings, registry: Registry, postgres_url: str
) -> None:
    """A run id over its column's 64 characters: SQLite would take it, PostgreSQL raises DataError."""
    bad = {"run": "r" * 100, "node": "", "status": "running", "at": "2026-01-01T00:00:00.000000+00:00"}
    dead_letters_keep_the_history_flowing(dataclasses.replace(settings, database_url=postgres_url), registry, bad)
