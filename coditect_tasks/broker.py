"""Talking to the broker outside Celery's consumer loop.

Reachability is checked up front, with a bounded deadline, so a mistyped URL is
one clear line within seconds instead of a worker retrying forever.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from urllib.parse import urlsplit

import redis
from kombu.connection import Connection
from kombu.exceptions import ChannelError, OperationalError

from .connection import redis_client
from .errors import BrokerUnreachableError
from .sentinel import celery_form
from .settings import STATE_SCHEMES, safe_url


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
    if urlsplit(url).scheme in STATE_SCHEMES:
        client = redis_client(url, timeout)
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
    kombu_url, options = celery_form(url)
    with Connection(kombu_url, connect_timeout=5, transport_options=options) as conn:
        channel = conn.default_channel
        for queue in queues:
            try:
                depths[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
            except ChannelError:
                depths[queue] = 0
                channel = conn.channel()  # AMQP closes a channel on a failed passive declare
    return depths
