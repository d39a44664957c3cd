"""``Client``: the one long-lived handle orchestrator code holds on a stack, and ``submit``.

A client is built once (its Celery app, which builds node messages without I/O, and one bounded
Redis connection pool) and shared by every thread of the process; each call borrows a connection
and gives it back. The module-level ``submit(dag)`` is the README's one-liner over one such
client per process, built on first use: never an app or a connection per call.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .broker import redis_client
from .dag import run as runs
from .dag.engine import Engine
from .dag.run import DagRun
from .dag.spec import Dag
from .settings import Settings
from .status import RunStatus

#: The run states ``runs(status=…)`` filters on.
STATES = tuple(s.value for s in (RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED))


class Client:
    """Submit DAGs and read, wait for, cancel and follow runs. Thread-safe; ``close()`` (or ``with``)."""

    def __init__(self, settings: Settings | None = None) -> None:
        from .app import create_app
        from .embedded import attach

        self.settings = settings or attach(Settings.from_env())
        self.app = create_app(self.settings)
        url = self.settings.state_url
        self.engine = Engine(redis_client(url, timeout=self.settings.connect_timeout), url)

    def submit(self, dag: Dag, *, idempotency_key: str | None = None) -> DagRun:
        """Validate and start ``dag`` (``DagError``: nothing enqueued). With ``idempotency_key``, at
        most once per key within ``CODITECT_IDEMPOTENCY_RETENTION``: a repeat with the same DAG
        returns the first run, one with another DAG raises ``IdempotencyConflictError``."""
        return runs.submit(dag, self.app, idempotency_key=idempotency_key, engine=self.engine)

    def get(self, run_id: str) -> DagRun:
        """The handle of run ``run_id``; ``RunNotFoundError`` if neither Redis nor the history knows it."""
        run = DagRun(run_id, self.app, self.engine)
        run.state()
        return run

    def runs(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest runs (live and recorded), ``status`` only if given; at most ``limit``."""
        return list_runs(self.app, self.engine, status, limit)

    def close(self) -> None:
        """Give back every connection; the client is unusable after."""
        self.engine.client.connection_pool.disconnect()
        self.app.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def list_runs(app: Any, engine: Engine, status: str | None, limit: int) -> list[dict[str, Any]]:
    """``limit`` newest runs in ``status`` (any if None), page after page of the run listing."""
    if status is not None and status not in STATES:
        raise ValueError(f"status {status!r} is not one of {', '.join(STATES)}")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    found: list[dict[str, Any]] = []
    before: str | None = None
    while len(found) < limit:
        page = runs.list_runs(app, limit, before, engine=engine)
        found.extend(row for row in page if status is None or row["status"] == status)
        if len(page) < limit:
            break
        before = page[-1]["run_id"]
    return found[:limit]


_DEFAULT: tuple[int, Client] | None = None
_DEFAULT_LOCK = threading.Lock()


def default_client() -> Client:
    """This process's client from the ``CODITECT_*`` settings, built on first use (again in a fork)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None or _DEFAULT[0] != os.getpid():
            _DEFAULT = (os.getpid(), Client())
        return _DEFAULT[1]


def submit(dag: Dag, app: Any = None, *, idempotency_key: str | None = None) -> DagRun:
    """Submit ``dag`` through this process's client (``app``: through that app's stack instead)."""
    if app is not None:
        return runs.submit(dag, app, idempotency_key=idempotency_key)
    return default_client().submit(dag, idempotency_key=idempotency_key)
