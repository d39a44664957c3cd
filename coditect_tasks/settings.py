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
from typing import Any
from urllib.parse import urlsplit

from . import keys
from .cluster import SCHEMES as CLUSTER_SCHEMES
from .cluster import ClusterUrl, ClusterUrlError, is_cluster
from .errors import ConfigError, NoBrokerError
from .keys import MAX_RESULT_BYTES
from .sentinel import SCHEME as SENTINEL_SCHEME
from .sentinel import SentinelUrl, SentinelUrlError, is_sentinel

#: A Redis (plain, TLS, or a primary that Sentinel watches: ``sentinel.py``).
REDIS_SCHEMES = frozenset({"redis", "rediss", SENTINEL_SCHEME})
BROKER_SCHEMES = REDIS_SCHEMES | {"amqp", "amqps", "pyamqp"}
#: Where run state may live: any Redis above, or a Redis Cluster (``cluster.py``), which kombu and
#: Celery cannot use as a broker or result backend.
STATE_SCHEMES = REDIS_SCHEMES | CLUSTER_SCHEMES
DEFAULT_AGENT_MODULES = ("workers.examples",)
#: Cells on a Redis Cluster when ``CODITECT_REDIS_CELLS`` is not set: enough for a few primaries each
#: to hold several, so that they share the load evenly.
DEFAULT_CLUSTER_CELLS = 16
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: AOF fsync policies the embedded Redis may run with: every write on disk before its reply
#: (the default), or once a second (up to a second of writes lost if the machine, not just the
#: process, goes down; several times less latency under load: see docs/explanation/performance.md).
FSYNC_POLICIES = ("always", "everysec")


Parse = Callable[[str, str], Any]


def setting(default: Any, parse: Parse, *, exported: bool = True, secret: bool = False) -> Any:
    """A settings field: its default, how its variable (``CODITECT_`` + the field's name in upper
    case) is read, and whether ``environment()`` passes it on to other processes."""
    return dataclasses.field(
        default=default, repr=not secret, metadata={"parse": parse, "exported": exported and not secret}
    )


def env_name(field: str) -> str:
    """The environment variable of settings field ``field``."""
    return f"CODITECT_{field.upper()}"


def _url(schemes: frozenset[str]) -> Parse:
    return lambda name, text: _check_url(name, text, schemes)


def _database(name: str, text: str) -> str:
    _check_database_url(text)
    return text


def _modules(name: str, text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def _choice(options: tuple[str, ...], upper: bool = False) -> Parse:
    def parse(name: str, text: str) -> str:
        value = text.upper() if upper else text
        if value not in options:
            raise ConfigError(name, f"{value!r} is not one of {', '.join(options)}")
        return value

    return parse


def _seconds(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(name, f"{text!r} is not a number of seconds") from None


def _whole(minimum: int = 1, maximum: int | None = None) -> Parse:
    """A whole number of at least ``minimum`` (at most ``maximum``)."""

    def parse(name: str, text: str) -> int:
        if not text.isdigit() or int(text) < minimum:
            kind = "positive whole number" if minimum == 1 else f"whole number ≥ {minimum}"
            raise ConfigError(name, f"{text!r} is not a {kind}")
        if maximum is not None and int(text) > maximum:
            raise ConfigError(name, f"{text} is over {maximum}, the most it may be")
        return int(text)

    return parse


def _flag(name: str, text: str) -> bool:
    if text.lower() not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigError(name, f"{text!r} is not one of 1, 0, true, false, yes, no")
    return text.lower() in ("1", "true", "yes")


def _text(name: str, text: str) -> str:
    return text


def _path(name: str, text: str) -> Path:
    return Path(text)


@dataclass(frozen=True)
class Settings:
    """Everything a process of coditect-tasks needs to find its peers. Each field is one
    ``CODITECT_<FIELD>`` variable, declared once here with its default and its parser.

    ``broker_url`` is ``None`` when nothing is configured: the CLI then starts
    (``up``, ``demo``) or attaches to (everything else) the embedded Redis.
    """

    #: Folder of the embedded stack (its Redis, logs, the SQLite history).
    home: Path = setting(Path(".coditect"), _path)
    #: Celery broker: Redis or RabbitMQ (none: the embedded Redis).
    broker_url: str | None = setting(None, _url(BROKER_SCHEMES))
    #: Celery result backend (none: the state Redis).
    result_backend: str | None = setting(None, _url(REDIS_SCHEMES))
    #: The Redis of run state and the registry (none: a Redis broker); may be a Redis Cluster
    #: (``redis+cluster://host:port,host:port``), with a broker of its own.
    redis_url: str | None = setting(None, _url(STATE_SCHEMES))
    #: Replicas that must acknowledge a submit, a completion or a fencing write before it counts
    #: (Redis ``WAIT``; none: 1 on a Sentinel-watched Redis or a Redis Cluster, 0 on a single Redis).
    redis_min_replicas: int | None = setting(None, _whole(minimum=0))
    #: Cells run state is spread over on a Redis Cluster, each on its own slot (none: 16 on a
    #: cluster, 1 otherwise). Every process of a deployment must agree; it may grow, never shrink.
    redis_cells: int | None = setting(None, _whole(maximum=keys.MAX_CELLS))
    #: SQLAlchemy URL of the run history (none: SQLite under ``home``).
    database_url: str | None = setting(None, _database)
    #: Python modules whose ``@agent`` declarations are loaded, comma-separated.
    agent_modules: tuple[str, ...] = setting(DEFAULT_AGENT_MODULES, _modules)
    #: Log level (``LOG_LEVELS``).
    log_level: str = setting("INFO", _choice(LOG_LEVELS, upper=True))
    #: Seconds to wait for the broker and Redis to answer before a clear error.
    connect_timeout: float = setting(8.0, _seconds)
    #: Nodes a DAG may have at most.
    max_nodes: int = setting(20_000, _whole())
    #: Bytes a DAG document may have at most.
    max_dag_bytes: int = setting(16 * 1024 * 1024, _whole())
    #: Bytes of one node's params (JSON) at most.
    max_params_bytes: int = setting(1024 * 1024, _whole())
    #: Items one foreach node may fan out to at most.
    max_foreach_items: int = setting(10_000, _whole())
    #: Levels of child runs a node may spawn below its root run at most (a child's child is 2).
    spawn_max_depth: int = setting(8, _whole())
    #: Nodes a root run's whole tree (itself and every run spawned below it) may have at most.
    spawn_max_nodes: int = setting(20_000, _whole())
    #: Chunks one attempt of a node may stream (``call.stream``); one more raises ``StreamLimitError``.
    stream_max_chunks: int = setting(50_000, _whole())
    #: Seconds a finished run's live state stays in Redis once its history is recorded (0: none).
    live_retention: int = setting(600, _whole(minimum=0))
    #: Seconds an idempotency key keeps naming the run it started (a repeat within it returns that run).
    idempotency_retention: int = setting(24 * 3600, _whole())
    #: Seconds a worker told to stop (SIGTERM) lets running nodes finish before it hands them off.
    shutdown_grace: int = setting(30, _whole(minimum=0))
    #: The embedded Redis's AOF fsync policy (``FSYNC_POLICIES``).
    embedded_fsync: str = setting("always", _choice(FSYNC_POLICIES))
    #: File a worker beats for its liveness and readiness probes (``coditect-tasks health``); none if unset.
    health_file: Path | None = setting(None, _path, exported=False)
    #: Bearer token every ``serve`` request must carry (none: open, loopback only). Never printed.
    api_token: str | None = setting(None, _text, secret=True)
    #: Flower's address, for the run page to link each node's worker there.
    flower_url: str | None = setting(None, _url(frozenset({"http", "https"})), exported=False)
    #: ``s3://bucket/prefix`` where node results over ``artifact_threshold`` bytes go (by reference).
    artifacts_url: str | None = setting(None, _url(frozenset({"s3"})))
    #: Bytes of a node result (as JSON) above which it is stored in ``artifacts_url``, not in Redis.
    artifact_threshold: int = setting(256 * 1024, _whole(maximum=MAX_RESULT_BYTES))
    #: Among a run's ready nodes of one priority, the one with the longest remaining path to the run's
    #: end (weighted by each agent's median duration) goes first; off (0): the order they became ready.
    critical_path: bool = setting(True, _flag)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the ``CODITECT_*`` variables; raise ``ConfigError``. An empty
        variable is an unset one."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = env_name(field.name)
            text = env.get(name, "").strip()
            if text:
                values[field.name] = field.metadata["parse"](name, text)
        if is_cluster(values.get("redis_url")) and "broker_url" not in values:
            raise ConfigError(
                "CODITECT_BROKER_URL",
                "required with a Redis Cluster (kombu has no cluster transport): a RabbitMQ or another Redis",
            )
        if values.get("redis_cells", 1) > 1 and not is_cluster(values.get("redis_url")):
            raise ConfigError("CODITECT_REDIS_CELLS", "more than 1 cell needs a Redis Cluster (redis+cluster://)")
        return cls(**values)

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: the zero-config path."""
        return self.broker_url is None

    def with_broker(self, url: str) -> Settings:
        """These settings pointed at ``url`` (the embedded Redis) for every Redis role."""
        return dataclasses.replace(self, broker_url=url, result_backend=None, redis_url=None)

    @property
    def outbox(self) -> bool:
        """True when the broker is not the state Redis (RabbitMQ, or another Redis beside a Redis
        Cluster): the engine's Lua scripts cannot publish to it, so node messages go through the
        outbox in the state Redis (``worker/outbox.py``)."""
        if self.broker_url is None:
            return False
        return urlsplit(self.broker_url).scheme not in REDIS_SCHEMES or not same_redis(self.state_url, self.broker_url)

    def require_broker(self) -> str:
        if self.broker_url is None:
            raise NoBrokerError(str(self.home))
        return self.broker_url

    @property
    def backend_url(self) -> str | None:
        """Result backend: explicit, else the state Redis (none beside a Redis Cluster, where
        Celery cannot keep results: the engine keeps nodes' results itself)."""
        if self.result_backend:
            return self.result_backend
        return None if is_cluster(self.state_url) else self.state_url

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
    def min_replicas(self) -> int:
        """Replicas a durable write waits for (``redis_min_replicas``, else by deployment)."""
        if self.redis_min_replicas is not None:
            return self.redis_min_replicas
        return 1 if is_sentinel(self.state_url) or is_cluster(self.state_url) else 0

    @property
    def cells(self) -> int:
        """Cells run state is spread over (``keys.in_cell``): ``redis_cells``, else 16 on a cluster."""
        if self.redis_cells is not None:
            return self.redis_cells
        return DEFAULT_CLUSTER_CELLS if is_cluster(self.redis_url) else 1  # (a broker is never a cluster)

    @property
    def history_url(self) -> str:
        """SQLAlchemy URL of the run history: explicit, else SQLite under home."""
        return self.database_url or f"sqlite:///{(self.home / 'history.db').resolve()}"

    def environment(self) -> dict[str, str]:
        """The variables another process needs to reach the same stack (no secret among them)."""
        env = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.metadata["exported"] and value is not None:
                env[env_name(field.name)] = _shown(value)
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


def _shown(value: Any) -> str:
    """A setting's value as its variable spells it."""
    if isinstance(value, Path):
        return str(value.resolve())
    if isinstance(value, tuple):
        return ",".join(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def same_redis(a: str, b: str) -> bool:
    """Whether two Redis URLs name the same server and database, however spelt (a default port or
    database written out or left out, the host's case); Sentinel URLs only as the same string."""
    if a == b:
        return True
    first, second = urlsplit(a), urlsplit(b)
    if SENTINEL_SCHEME in (first.scheme, second.scheme):
        return False

    def place(parts: Any) -> tuple[str, str, int, str]:
        return (parts.scheme, (parts.hostname or "").lower(), parts.port or 6379, parts.path.strip("/") or "0")

    try:
        return place(first) == place(second)
    except ValueError:  # a malformed port: not one Redis we can tell
        return False


def safe_url(url: str) -> str:
    """``url`` with any password masked, for messages and logs, even when malformed."""
    from kombu.utils.url import maybe_sanitize_url  # kombu's import is slow: quick commands skip it

    if url.startswith(
        (SENTINEL_SCHEME + "://", *(s + "://" for s in CLUSTER_SCHEMES))
    ):  # several hosts: kombu's parse fails
        masked = re.sub(r"^([^:]+://)[^?#]*@", r"\1:**@", url)  # up to the last @: a password may hold '/'
        return re.sub(r"sentinel_password=[^&]*", "sentinel_password=**", masked)
    try:
        return str(maybe_sanitize_url(url))
    except ValueError:
        return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:**@", url)


def _check_url(name: str, value: str | None, schemes: frozenset[str]) -> str | None:
    if value is None:
        return None
    scheme = urlsplit(value).scheme
    if (scheme == SENTINEL_SCHEME or scheme in CLUSTER_SCHEMES) and scheme in schemes:
        try:
            (SentinelUrl if scheme == SENTINEL_SCHEME else ClusterUrl).parse(value)
        except (SentinelUrlError, ClusterUrlError) as exc:
            raise ConfigError(name, f"{exc} in {safe_url(value)!r}") from None
        return value
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
