"""Logging: structlog everywhere, JSON lines in workers (readable console on a TTY).

Celery's, the engine's and the agents' own ``logging`` calls all go through one
structlog formatter, so every line written while a node runs carries the ids bound
for that task (``run_id``, ``node_id``, ``agent``, ``attempt``, ``task_id``) and the
current span's ``trace_id``. Context is bound in one place, the Celery signal
handlers of ``observability.signals``; agent code binds nothing.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import Any

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from .tracing import current_ids


def add_trace_ids(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """Add the current OpenTelemetry span's ``trace_id`` and ``span_id``."""
    ids = current_ids()
    if ids is not None:
        event.setdefault("trace_id", ids[0])
        event.setdefault("span_id", ids[1])
    return event


SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    add_trace_ids,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


#: Bytes a log file under ``CODITECT_HOME`` reaches before it is rotated, and how many old ones stay.
LOG_FILE_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 3


def log_file() -> str | None:
    """The file this process logs to (``CODITECT_LOG_FILE``, set by the local stack), if any."""
    return os.environ.get("CODITECT_LOG_FILE") or None


def configure_logging(
    level: str, json_lines: bool | None = None, file: str | None = None, max_bytes: int = LOG_FILE_BYTES
) -> None:
    """Route stdlib logging and structlog to stderr, as JSON lines unless on a TTY; or, with
    ``file``, as JSON lines to that file, rotated at ``max_bytes`` (``LOG_FILE_BACKUPS`` kept), so
    a stack that runs for days keeps its logs bounded.

    ``json_lines`` forces the choice; ``None`` picks JSON when stderr is not a TTY.
    """
    as_json = True if file else (not sys.stderr.isatty()) if json_lines is None else json_lines
    renderer: Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler: logging.Handler = (
        logging.handlers.RotatingFileHandler(file, maxBytes=max_bytes, backupCount=LOG_FILE_BACKUPS)
        if file
        else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler, *exported(formatter)]
    root.setLevel(level)
    structlog.configure(
        processors=[*SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def exported(formatter: logging.Formatter) -> list[logging.Handler]:
    """With ``OTEL_LOGS_EXPORTER=otlp`` and an OTLP endpoint, a handler that also sends every record
    (its JSON line as body, the current span's trace context with it) over OTLP: the collector
    forwards them to Loki, where a line's ``trace_id`` opens its trace. None otherwise."""
    from . import tracing

    if os.environ.get("OTEL_LOGS_EXPORTER", "").strip().lower() != "otlp" or not tracing.export_configured():
        return []
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    name = os.environ.get("OTEL_SERVICE_NAME") or f"coditect-{sys.argv[1] if len(sys.argv) > 1 else 'process'}"
    provider = LoggerProvider(resource=Resource.create({"service.name": name}))
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    handler = LoggingHandler(logger_provider=provider)
    handler.setFormatter(formatter)
    return [handler]


def flush() -> None:
    """Send what the handlers hold (the OTLP batch) before the process exits."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def bind(**values: Any) -> None:
    """Bind ``values`` to every log line of the current task."""
    structlog.contextvars.bind_contextvars(**values)


def bind_message(task_id: str | None, run_id: Any = None, node_id: Any = None) -> None:
    """Bind a message's ids; a node's foreach item k of node N runs as ``N#k`` (logged as N, k)."""
    values: dict[str, Any] = {"task_id": task_id}
    if run_id:
        values["run_id"] = run_id
    if node_id:
        node, item, index = str(node_id).partition("#")
        values["node_id"] = node
        if item:
            values["item"] = int(index)
        else:
            structlog.contextvars.unbind_contextvars("item")
    bind(**values)


def clear() -> None:
    structlog.contextvars.clear_contextvars()
