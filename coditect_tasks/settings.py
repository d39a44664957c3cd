"""One typed settings object, read from ``CODITECT_*`` environment variables.

Resolution order for every field: the environment, then the embedded stack
recorded under ``CODITECT_HOME`` (see ``embedded.attach``), then the default.
Secrets (passwords inside URLs) only ever come from the environment.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError, NoBrokerError
from .keys import MAX_RESULT_BYTES

BROKER_SCHEMES = frozenset({"redis", "rediss", "amqp", "amqps", "pyamqp"})
REDIS_SCHEMES = frozenset({"redis", "rediss"})
DEFAULT_AGENT_MODULES = ("workers.examples",)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: AOF fsync policies the embedded Redis may run with: every write on disk before its reply
#: (the default), or once a second (up to a second of writes lost if the machine, not just the
#: process, goes down; several times less latency under load: see docs/performance.md).
FSYNC_POLICIES = ("always", "everysec")


@dataclass(frozen=True)
class Settings:
    """Everything a process of coditect-tasks needs to find its peers.

    ``broker_url`` is ``None`` when nothing is configured: the CLI then starts
    (``up``, ``demo``) or attaches to (everything else) the embedded Redis.
    """

    home: Path = Path(".coditect")
    broker_url: str | None = None
    result_backend: str | None = None
    redis_url: str | None = None
    database_url: str | None = None
    agent_modules: tuple[str, ...] = DEFAULT_AGENT_MODULES
    log_level: str = "INFO"
    connect_timeout: float = 8.0
    max_nodes: int = 20_000
    max_dag_bytes: int = 16 * 1024 * 1024
    max_params_bytes: int = 1024 * 1024
    max_foreach_items: int = 10_000
    #: Seconds a finished run's live state stays in Redis once its history is recorded (0: none).
    live_retention: int = 600
    #: Seconds an idempotency key keeps naming the run it started (a repeat within it returns that run).
    idempotency_retention: int = 24 * 3600
    #: Seconds a worker told to stop (SIGTERM) lets running nodes finish before it hands them off.
    shutdown_grace: int = 30
    #: The embedded Redis's AOF fsync policy (``FSYNC_POLICIES``).
    embedded_fsync: str = "always"
    #: File a worker beats for its liveness and readiness probes (``coditect-tasks health``); none if unset.
    health_file: Path | None = None
    #: Bearer token every ``serve`` request must carry (none: open, loopback only). Never printed.
    api_token: str | None = dataclasses.field(default=None, repr=False)
    #: Flower's address, for the run page to link each node's worker there.
    flower_url: str | None = None
    #: ``s3://bucket/prefix`` where node results over ``artifact_threshold`` bytes go (by reference).
    artifacts_url: str | None = None
    #: Bytes of a node result (as JSON) above which it is stored in ``artifacts_url``, not in Redis.
    artifact_threshold: int = 256 * 1024

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the ``CODITECT_*`` variables; raise ``ConfigError``."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        broker = _check_url("CODITECT_BROKER_URL", get("CODITECT_BROKER_URL"), BROKER_SCHEMES)
        backend = _check_url("CODITECT_RESULT_BACKEND", get("CODITECT_RESULT_BACKEND"), REDIS_SCHEMES)
        redis_url = _check_url("CODITECT_REDIS_URL", get("CODITECT_REDIS_URL"), REDIS_SCHEMES)
        database = get("CODITECT_DATABASE_URL")
        if database is not None:
            _check_database_url(database)
        modules = get("CODITECT_AGENT_MODULES")
        agent_modules = tuple(m.strip() for m in modules.split(",") if m.strip()) if modules else DEFAULT_AGENT_MODULES
        log_level = (get("CODITECT_LOG_LEVEL") or "INFO").upper()
        if log_level not in LOG_LEVELS:
            raise ConfigError("CODITECT_LOG_LEVEL", f"{log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        fsync = get("CODITECT_EMBEDDED_FSYNC") or "always"
        if fsync not in FSYNC_POLICIES:
            raise ConfigError("CODITECT_EMBEDDED_FSYNC", f"{fsync!r} is not one of {', '.join(FSYNC_POLICIES)}")
        timeout_text = get("CODITECT_CONNECT_TIMEOUT") or "8"
        try:
            timeout = float(timeout_text)
        except ValueError:
            raise ConfigError("CODITECT_CONNECT_TIMEOUT", f"{timeout_text!r} is not a number of seconds") from None
        return cls(
            home=Path(get("CODITECT_HOME") or ".coditect"),
            broker_url=broker,
            result_backend=backend,
            redis_url=redis_url,
            database_url=database,
            agent_modules=agent_modules,
            log_level=log_level,
            connect_timeout=timeout,
            max_nodes=_whole(get, "CODITECT_MAX_NODES", cls.max_nodes),
            max_dag_bytes=_whole(get, "CODITECT_MAX_DAG_BYTES", cls.max_dag_bytes),
            max_params_bytes=_whole(get, "CODITECT_MAX_PARAMS_BYTES", cls.max_params_bytes),
            max_foreach_items=_whole(get, "CODITECT_MAX_FOREACH_ITEMS", cls.max_foreach_items),
            live_retention=_whole(get, "CODITECT_LIVE_RETENTION", cls.live_retention, minimum=0),
            idempotency_retention=_whole(get, "CODITECT_IDEMPOTENCY_RETENTION", cls.idempotency_retention),
            embedded_fsync=fsync,
            shutdown_grace=_whole(get, "CODITECT_SHUTDOWN_GRACE", cls.shutdown_grace, minimum=0),
            health_file=Path(health) if (health := get("CODITECT_HEALTH_FILE")) else None,
            api_token=get("CODITECT_API_TOKEN"),
            flower_url=_check_url("CODITECT_FLOWER_URL", get("CODITECT_FLOWER_URL"), frozenset({"http", "https"})),
            artifacts_url=_check_url("CODITECT_ARTIFACTS_URL", get("CODITECT_ARTIFACTS_URL"), frozenset({"s3"})),
            artifact_threshold=_whole(
                get, "CODITECT_ARTIFACT_THRESHOLD", cls.artifact_threshold, maximum=MAX_RESULT_BYTES
            ),
        )

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: the zero-config path."""
        return self.broker_url is None

    def with_broker(self, url: str) -> Settings:
        """These settings pointed at ``url`` (the embedded Redis) for every Redis role."""
        return dataclasses.replace(self, broker_url=url, result_backend=None, redis_url=None)

    @property
    def outbox(self) -> bool:
        """True when the broker is not Redis (RabbitMQ): the engine's Lua scripts cannot publish
        to it, so node messages go through the outbox in the state Redis (``worker/outbox.py``)."""
        return self.broker_url is not None and urlsplit(self.broker_url).scheme not in REDIS_SCHEMES

    def require_broker(self) -> str:
        if self.broker_url is None:
            raise NoBrokerError(str(self.home))
        return self.broker_url

    @property
    def backend_url(self) -> str:
        """Result backend: explicit, else the state Redis."""
        return self.result_backend or self.state_url

    @property
    def state_url(self) -> str:
        """The Redis that holds registry and run state: explicit, else a Redis broker."""
        if self.redis_url:
            return self.redis_url
        broker = self.require_broker()
        if urlsplit(broker).scheme in REDIS_SCHEMES:
            return broker
        if self.result_backend:
            return self.result_backend
        raise ConfigError(
            "CODITECT_REDIS_URL",
            "required when the broker is not Redis (it holds the agent registry and run state)",
        )

    @property
    def history_url(self) -> str:
        """SQLAlchemy URL of the run history: explicit, else SQLite under home."""
        return self.database_url or f"sqlite:///{(self.home / 'history.db').resolve()}"

    def environment(self) -> dict[str, str]:
        """The variables another process needs to reach the same stack."""
        env = {"CODITECT_HOME": str(self.home.resolve())}
        if self.broker_url:
            env["CODITECT_BROKER_URL"] = self.broker_url
        if self.result_backend:
            env["CODITECT_RESULT_BACKEND"] = self.result_backend
        if self.redis_url:
            env["CODITECT_REDIS_URL"] = self.redis_url
        if self.database_url:
            env["CODITECT_DATABASE_URL"] = self.database_url
        env["CODITECT_AGENT_MODULES"] = ",".join(self.agent_modules)
        env["CODITECT_LOG_LEVEL"] = self.log_level
        env["CODITECT_CONNECT_TIMEOUT"] = f"{self.connect_timeout:g}"
        env["CODITECT_MAX_NODES"] = str(self.max_nodes)
        env["CODITECT_MAX_DAG_BYTES"] = str(self.max_dag_bytes)
        env["CODITECT_MAX_PARAMS_BYTES"] = str(self.max_params_bytes)
        env["CODITECT_MAX_FOREACH_ITEMS"] = str(self.max_foreach_items)
        env["CODITECT_LIVE_RETENTION"] = str(self.live_retention)
        env["CODITECT_IDEMPOTENCY_RETENTION"] = str(self.idempotency_retention)
        env["CODITECT_SHUTDOWN_GRACE"] = str(self.shutdown_grace)
        env["CODITECT_EMBEDDED_FSYNC"] = self.embedded_fsync
        if self.artifacts_url:
            env["CODITECT_ARTIFACTS_URL"] = self.artifacts_url
        env["CODITECT_ARTIFACT_THRESHOLD"] = str(self.artifact_threshold)
        return env

    def dag_limits(self) -> dict[str, int]:
        """The limits ``dag.plan.validate`` enforces, as its keyword arguments."""
        return {
            "max_nodes": self.max_nodes,
            "max_params_bytes": self.max_params_bytes,
            "max_foreach_items": self.max_foreach_items,
        }

    @property
    def log_level_number(self) -> int:
        return int(logging.getLevelName(self.log_level))


def _whole(
    get: Callable[[str], str | None], name: str, default: int, minimum: int = 1, maximum: int | None = None
) -> int:
    """A whole number of at least ``minimum`` (at most ``maximum``) from variable ``name``, else ``default``."""
    text = get(name) or str(default)
    if not text.isdigit() or int(text) < minimum:
        kind = "positive whole number" if minimum == 1 else f"whole number ≥ {minimum}"
        raise ConfigError(name, f"{text!r} is not a {kind}")
    if maximum is not None and int(text) > maximum:
        raise ConfigError(name, f"{text} is over {maximum}, the most a result in Redis may be")
    return int(text)


def safe_url(url: str) -> str:
    """``url`` with any password masked, for messages and logs, even when malformed."""
    from kombu.utils.url import maybe_sanitize_url  # kombu's import is slow: quick commands skip it

    try:
        return str(maybe_sanitize_url(url))
    except ValueError:
        return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:**@", url)


def _check_url(name: str, value: str | None, schemes: frozenset[str]) -> str | None:
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(name, f"malformed URL {safe_url(value)!r}: {exc}") from None
    if parts.scheme not in schemes:
        raise ConfigError(
            name,
            f"unsupported scheme {parts.scheme or '(none)'!r} in {safe_url(value)!r} "
            f"(expected one of {', '.join(s + '://' for s in sorted(schemes))})",
        )
    if not parts.hostname:
        raise ConfigError(name, f"no host in {safe_url(value)!r}")
    del port
    return value


def _check_database_url(value: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(value)
    except ArgumentError:
        raise ConfigError("CODITECT_DATABASE_URL", f"malformed SQLAlchemy URL {safe_url(value)!r}") from None
