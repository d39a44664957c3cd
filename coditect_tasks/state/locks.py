"""Redis lease locks with fencing tokens.

A lock is a key that expires with its lease; taking it also increments the lock's fence counter,
in one script, so every holder gets a token larger than all before it. A lease can run out while
its holder still runs (a pause longer than the TTL): the lock itself cannot stop that holder,
only the storage it writes to can, by refusing tokens older than one it has seen
(``state.put(..., fence=lease.token)``, ``artifacts.put(..., fence=...)``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis
import tenacity

from .. import keys
from ..errors import InvalidArgumentError, LockTimeoutError
from ._client import client_for

#: Take the lock if free: (1, token) with a new fencing token, else (0, 0).
ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, 0} end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return {1, token}
"""
#: Do something to the lock only if this lease still holds it (ARGV[1] is the lock's value).
RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"


@dataclass(frozen=True)
class Lease:
    """One holding of a lock: ``token`` is larger than every earlier holder's."""

    name: str
    token: int
    owner: str
    ttl: float
    client: redis.Redis

    @property
    def value(self) -> str:
        return f"{self.owner}|{self.token}"

    def held(self) -> bool:
        """True while the lease has not run out (nobody else can have the lock then)."""
        return bool(self.client.get(keys.LOCK_PREFIX + self.name) == self.value)

    def renew(self, ttl: float | None = None) -> bool:
        """Extend the lease to ``ttl`` (default: the original) from now; False if it had run out."""
        ms = int((ttl or self.ttl) * 1000)
        return bool(self.client.eval(RENEW, 1, keys.LOCK_PREFIX + self.name, self.value, ms))

    def release(self) -> bool:
        """Give the lock up; False if the lease had run out already (then another may hold it)."""
        return bool(self.client.eval(RELEASE, 1, keys.LOCK_PREFIX + self.name, self.value))


class Lock:
    """``with lock("deploy", ttl=30) as lease: ...``: waits up to ``wait`` seconds (None: for
    ever) for the lock, holds it for ``ttl`` seconds unless renewed, releases it on exit."""

    def __init__(self, name: str, ttl: float, wait: float | None = None, settings: Any = None) -> None:
        if not name or len(name) > 256 or not name.isprintable():
            raise InvalidArgumentError(f"a lock name is 1 to 256 printable characters, not {name!r}")
        if not ttl >= 0.001:
            raise InvalidArgumentError(f"a lock's ttl is at least 0.001 s, not {ttl!r}")
        self.name = name
        self.ttl = ttl
        self.wait = wait
        self.client = client_for(settings)
        self.lease: Lease | None = None

    def try_acquire(self) -> Lease | None:
        """The lease if the lock was free, else None (no waiting)."""
        owner = uuid.uuid4().hex
        names = (keys.LOCK_PREFIX + self.name, keys.FENCE_PREFIX + self.name)
        taken, token = self.client.eval(ACQUIRE, 2, *names, owner, int(self.ttl * 1000))
        return Lease(self.name, int(token), owner, self.ttl, self.client) if int(taken) else None

    def acquire(self) -> Lease:
        """Wait for the lock (polling, backing off to 0.2 s); ``LockTimeoutError`` after ``wait``."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_never if self.wait is None else tenacity.stop_after_delay(self.wait),
            wait=tenacity.wait_exponential(multiplier=0.005, max=0.2),
            retry=tenacity.retry_if_result(lambda lease: lease is None),
            retry_error_callback=lambda state: None,
        )
        lease: Lease | None = retrying(self.try_acquire)
        if lease is None:
            raise LockTimeoutError(self.name, self.wait or 0.0)
        self.lease = lease
        return lease

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None


def lock(name: str, ttl: float, *, wait: float | None = None, settings: Any = None) -> Lock:
    """A lease lock on ``name`` in the state Redis; see ``Lock``."""
    return Lock(name, ttl, wait, settings)
