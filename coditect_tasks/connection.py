"""Connections to the state Redis: bounded pools, outages waited out, eviction refused.

Every process reaches run state through one pool per URL (``redis_client``); a call that meets
a restart or a failover is repeated with backoff (``outlast_outages``) for as long as the caller
allows, because every engine script is idempotent or fenced.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.asyncio as aioredis
import tenacity
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelConnectionPool
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ClusterDownError, MovedError, SlotNotCoveredError, TryAgainError
from redis.sentinel import Sentinel, SentinelConnectionPool

from . import keys
from .cluster import ClusterUrl, is_cluster
from .errors import EvictingRedisError
from .sentinel import SentinelUrl, is_sentinel
from .settings import safe_url

log = logging.getLogger(__name__)

#: Redis errors worth waiting out: a restart, a failover (a cluster's slot with no primary yet), a
#: blip in the network.
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, ClusterDownError, TryAgainError, SlotNotCoveredError)


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


#: Connections one client may open; more concurrent callers wait for one to come free.
MAX_CONNECTIONS = 100
#: Seconds a caller waits for a free connection before an error.
POOL_WAIT_SECONDS = 30.0


def redis_client(url: str, timeout: float = 5.0, decode: bool = True) -> redis.Redis:
    """A client for the state Redis whose socket operations never hang forever.

    Its pool blocks instead of failing when all connections are busy, so a producer
    with hundreds of threads or greenlets submitting at once queues for a connection
    rather than meeting ``Too many connections``. A ``redis+sentinel://`` URL gives a client of
    the primary its Sentinels name, found again after a failover (``sentinel.py``).
    """
    return cast(redis.Redis, _client(_SYNC, url, MAX_CONNECTIONS, POOL_WAIT_SECONDS, timeout, decode))


def async_redis_client(url: str, max_connections: int, pool_timeout: float | None, timeout: float) -> aioredis.Redis:
    """``redis_client`` for an event loop (the asyncio client)."""
    return cast(aioredis.Redis, _client(_ASYNC, url, max_connections, pool_timeout, timeout, True))


@dataclass(frozen=True)
class _Flavour:
    """redis-py's classes for one kind of client: sync or asyncio."""

    redis: Any
    pool: Any
    sentinel: Any
    sentinel_pool: Any
    cluster: Any
    cluster_node: Any


def _client(
    flavour: _Flavour, url: str, max_connections: int, pool_timeout: float | None, timeout: float, decode: bool
) -> Any:
    """A client of ``flavour`` on ``url`` with a bounded, blocking pool (through its Sentinels for a
    ``redis+sentinel://`` URL)."""
    pooling = {
        "max_connections": max_connections,
        "timeout": pool_timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 30,
        "decode_responses": decode,
    }
    if is_cluster(url):
        return _cluster(flavour, ClusterUrl.parse(url), pooling)
    if not is_sentinel(url):
        return flavour.redis(connection_pool=flavour.pool.from_url(url, **pooling))
    where = SentinelUrl.parse(url)
    sentinels = flavour.sentinel(
        list(where.hosts),
        sentinel_kwargs={"socket_connect_timeout": timeout, "socket_timeout": timeout, **where.sentinel_kwargs},
    )
    return sentinels.master_for(
        where.service,
        connection_pool_class=flavour.sentinel_pool,
        password=where.password,
        db=where.db,
        **pooling,
    )


def _cluster(flavour: _Flavour, where: ClusterUrl, pooling: dict[str, Any]) -> Any:
    """A cluster client: each node's pool bounded by ``max_connections`` (a sync caller waits for a
    free connection), the slot map learnt from the nodes named and again on each failover."""
    options = {k: v for k, v in pooling.items() if k != "timeout"}  # each node's pool: its own bound
    if flavour is _SYNC:
        options["connection_pool_class"] = redis.BlockingConnectionPool
    return flavour.cluster(
        startup_nodes=[flavour.cluster_node(host, port) for host, port in where.hosts],
        username=where.username,
        password=where.password,
        ssl=where.tls,
        **options,
    )


class _BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """The primary's connections, found through Sentinel, bounded as ``redis_client``'s are: a
    caller waits for a free one rather than meeting ``Too many connections``."""


def require_noeviction(client: redis.Redis, url: str) -> None:
    """``EvictingRedisError`` unless Redis at ``url`` refuses writes when full instead of evicting keys."""
    check_noeviction(slot_memory(client), url)


def check_noeviction(memory: dict[str, Any], url: str) -> None:
    """``EvictingRedisError`` unless ``memory`` (Redis's ``INFO memory``, which managed services
    allow where ``CONFIG GET`` is disabled) says it refuses writes when full."""
    policy = str(memory.get("maxmemory_policy", "noeviction"))
    if policy != "noeviction":
        raise EvictingRedisError(safe_url(url), policy)


def barrier(client: Any, replicas: int, present: str | None = None, cell: int = 0) -> Any:
    """Wait for ``replicas`` replicas to have every write made so far on ``client`` (sync or asyncio),
    whatever connection made it: a barrier write, then ``WAIT`` on the same connection (replication
    is one ordered stream, so a replica that has the barrier has everything before it). With
    ``present``, also whether that key exists on the server waited on (a failover may have moved the
    pipeline to a new primary). Returns the pipeline's ``execute()`` (awaitable on an event loop):
    [barrier count, replicas that have it(, 1 if ``present`` exists)]. On a cluster, the primary
    waited on is that of cell ``cell``, whose writes these were."""
    if isinstance(client, AsyncRedisCluster):
        return _remapping(client, lambda: _barrier_pipe(client, replicas, present, cell).execute())
    pipe = _barrier_pipe(client, replicas, present, cell)
    if isinstance(client, RedisCluster):
        try:
            return pipe.execute()
        except TRANSIENT:
            _remap(client)
            raise
        except MovedError as exc:  # the slot moved (a failover): asked again next time, an outage till then
            _remap(client)
            raise redis.ConnectionError(f"the platform's slot moved: {exc}") from exc
    return pipe.execute()


def _barrier_pipe(client: Any, replicas: int, present: str | None, cell: int) -> Any:
    pipe = on_slot(client, cell).pipeline(transaction=False)
    pipe.incr(keys.in_cell(keys.REPLICATED, cell))
    pipe.wait(replicas, int(keys.REPLICA_WAIT_SECONDS * 1000))
    if present is not None:
        pipe.exists(present)
    return pipe


def slot_memory(client: Any) -> Any:
    """``INFO memory`` of the primary that holds the platform's slot (awaitable on an event loop)."""
    if isinstance(client, AsyncRedisCluster):
        return _remapping(client, lambda: on_slot(client).info("memory"))
    return on_slot(client).info("memory")


def _remap(client: RedisCluster) -> None:
    """Ask the cluster again which node holds which slot: the barrier went around the cluster
    client, which learns of a failover only from its own calls, so a retry would meet the dead node."""
    with contextlib.suppress(redis.RedisError):
        client.nodes_manager.initialize()


async def _remapping(client: AsyncRedisCluster, call: Callable[[], Any]) -> Any:
    """``call()`` on the slot's primary from an event loop, the cluster's map learnt first (an asyncio
    cluster client learns it on its first command) and again after an error (``_remap``)."""
    try:
        await client.initialize()
        return await call()
    except (*TRANSIENT, MovedError) as exc:
        with contextlib.suppress(redis.RedisError):
            await client.nodes_manager.initialize()
        if isinstance(exc, MovedError):
            raise redis.ConnectionError(f"the platform's slot moved: {exc}") from exc
        raise


def on_slot(client: Any, cell: int = 0) -> Any:
    """``client`` itself, or for a cluster a plain client of the primary that holds cell ``cell``'s
    slot now: ``WAIT`` counts the writes of its own connection, and a cluster client would send it
    (it names no key) to some other node."""
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(keys.route(cell))  # type: ignore[no-untyped-call]
        return client.get_redis_connection(node)
    if isinstance(client, AsyncRedisCluster):
        node = client.get_node_from_key(keys.route(cell))
        assert node is not None  # (it raises SlotNotCoveredError rather than return None)
        plain: dict[str, aioredis.Redis] = client.__dict__.setdefault("_coditect_nodes", {})
        if node.name not in plain:
            pool = aioredis.ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
            plain[node.name] = aioredis.Redis(connection_pool=pool)
        return plain[node.name]
    return client


def close(client: redis.Redis) -> None:
    """Give back every connection of a ``redis_client`` (of every node, on a cluster)."""
    if isinstance(client, RedisCluster):
        client.close()
    else:
        client.connection_pool.disconnect()


async def close_async(client: aioredis.Redis) -> None:
    """Give back every connection of an ``async_redis_client`` (and of its nodes, on a cluster)."""
    for plain in client.__dict__.get("_coditect_nodes", {}).values():
        await plain.connection_pool.disconnect()
    if isinstance(client, AsyncRedisCluster):
        await client.aclose()
    else:
        await client.connection_pool.disconnect()


class _AsyncBlockingSentinelPool(AsyncSentinelConnectionPool, aioredis.BlockingConnectionPool):
    """``_BlockingSentinelPool`` for an event loop: a call waits up to ``timeout`` for a free connection."""


_SYNC = _Flavour(redis.Redis, redis.BlockingConnectionPool, Sentinel, _BlockingSentinelPool, RedisCluster, ClusterNode)
_ASYNC = _Flavour(
    aioredis.Redis,
    aioredis.BlockingConnectionPool,
    AsyncSentinel,
    _AsyncBlockingSentinelPool,
    AsyncRedisCluster,
    AsyncClusterNode,
)
