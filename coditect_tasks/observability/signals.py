"""The one place where observability hooks into a worker: Celery signal handlers.

Logging is configured instead of Celery's own; each pool process sets up tracing
after the fork; every task binds its ids to the log context before it runs and
clears them after, so agent code never has to.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from .. import keys
from . import logs, tracing

SERVICE = "coditect-worker"


def install(log_level: str, pool: str) -> None:
    """Connect the handlers for a worker of ``pool`` (prefork, threads or solo)."""

    def setup_logging(**kwargs: Any) -> None:
        logs.configure_logging(log_level, file=logs.log_file())

    signals.setup_logging.connect(setup_logging, weak=False, dispatch_uid="coditect-logging")
    init = signals.worker_process_init if pool == "prefork" else signals.worker_init
    init.connect(_init_tracing, weak=False, dispatch_uid="coditect-tracing")
    shutdown = signals.worker_process_shutdown if pool == "prefork" else signals.worker_shutdown
    shutdown.connect(_flush, weak=False, dispatch_uid="coditect-flush")
    signals.task_prerun.connect(_bind_task, weak=False, dispatch_uid="coditect-bind")
    signals.task_postrun.connect(_clear_task, weak=False, dispatch_uid="coditect-clear")


def _init_tracing(**kwargs: Any) -> None:
    if tracing.setup_tracing(SERVICE):
        tracing.instrument_celery()


def _flush(**kwargs: Any) -> None:
    tracing.flush()
    logs.flush()


def _bind_task(task_id: str | None = None, task: Any = None, kwargs: dict[str, Any] | None = None, **rest: Any) -> None:
    logs.clear()
    name = str(getattr(task, "name", "") or "")
    values: dict[str, Any] = {}
    if name.startswith(keys.AGENT_QUEUE_PREFIX):
        values["agent"] = name[len(keys.AGENT_QUEUE_PREFIX) :]
    kwargs = kwargs or {}
    logs.bind_message(task_id, kwargs.get("run_id"), kwargs.get("node_id"))
    # a node's attempt is known once it begins (worker/execution.py rebinds it); a plain call's is this
    values["attempt"] = int(getattr(getattr(task, "request", None), "retries", 0) or 0) + 1
    logs.bind(**values)


def _clear_task(**kwargs: Any) -> None:
    logs.clear()
