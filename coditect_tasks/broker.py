"""Talking to the broker and the state Redis outside Celery's consumer loop.

Reachability is checked up front, with a bounded deadline, so a mistyped URL is
one clear line within seconds instead of a worker retrying forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import redis
import tenacity
from kombu.connection import Connection
from kombu.exceptions import ChannelError, OperationalError

from .errors import BrokerUnreachableError, EvictingRedisError
from .settings import REDIS_SCHEMES, safe_url

#: Redis errors worth waiting out: a restart, a failover, a blip in the network.
TRANSIENT = (redis.ConnectionError, redis.TimeoutError)


def outlast_outages(seconds: float, retrying: type[tenacity.BaseRetrying] = tenacity.Retrying) -> Any:
    """Retry transient Redis errors with jittered exponential backoff for up to ``seconds``
    (``retrying``: ``tenacity.AsyncRetrying`` on an event loop)."""
    return retrying(
        retry=tenacity.retry_if_exception_type(TRANSIENT),
        wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=2.0),
        stop=tenacity.stop_after_delay(seconds),
        before_sleep=lambda state: log.warning(
            "Redis unavailable (%s); retrying", state.outcome.exception() if state.outcome else "?"
        ),
        reraise=True,
    )


log = logging.getLogger(__name__)

#: Connections one client may open; more concurrent callers wait for one to come free.
MAX_CONNECTIONS = 100
#: Seconds a caller waits for a free connection before an error.
POOL_WAIT_SECONDS = 30.0


def redis_client(url: str, timeout: float = 5.0) -> redis.Redis:
    """A client for the state Redis whose socket operations never hang forever.

    Its pool blocks instead of failing when all connections are busy, so a producer
    with hundreds of threads or greenlets submitting at once queues for a connection
    rather than meeting ``Too many connections``.
    """
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        decode_responses=True,
    )
    return redis.Redis(connection_pool=pool)


def require_noeviction(client: redis.Redis, url: str) -> None:
    """``EvictingRedisError`` unless Redis at ``url`` refuses writes when full instead of evicting keys.

    Read from ``INFO memory``, which managed services allow where ``CONFIG GET`` is disabled.
    """
    policy = str(client.info("memory").get("maxmemory_policy", "noeviction"))
    if policy != "noeviction":
        raise EvictingRedisError(safe_url(url), policy)


def ping(url: str, deadline: float) -> None:
    """Return once ``url`` answers; ``BrokerUnreachableError`` after ``deadline`` seconds.

    Retries while the deadline allows, so a broker that is still starting (a
    container coming up beside the worker) is waited for, not refused.
    """
    end = time.monotonic() + deadline
    while True:
        remaining = end - time.monotonic()
        try:
            _ping_once(url, max(0.5, min(2.0, remaining)))
            return
        except redis.AuthenticationError as exc:
            raise BrokerUnreachableError(safe_url(url), f"authentication failed ({exc})") from None
        except (OSError, redis.RedisError, OperationalError) as exc:
            if time.monotonic() + 0.25 >= end:
                reason = str(exc) or type(exc).__name__
                raise BrokerUnreachableError(safe_url(url), reason) from None
        time.sleep(0.25)


def _ping_once(url: str, timeout: float) -> None:
    if urlsplit(url).scheme in REDIS_SCHEMES:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
        return
    with Connection(url, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)


def queue_depths(url: str, queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting (not yet delivered) in each queue; 0 for a queue never declared."""
    depths: dict[str, int] = {}
    with Connection(url, connect_timeout=5) as conn:
        channel = conn.default_channel
        for queue in queues:
            try:
                depths[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
            except ChannelError:
                depths[queue] = 0
                channel = conn.channel()  # AMQP closes a channel on a failed passive declare
    return depths
