"""Circuit breakers per agent, their state shared by every worker through Redis.

pybreaker does the state machine (closed → open after ``fail_max`` consecutive
failures → half-open probe after ``reset_timeout`` → closed); its Redis storage
makes one breaker per agent across all processes and hosts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import cast

import pybreaker
import redis

from .. import keys
from ..connection import outlast_outages, redis_client

_BREAKERS: dict[tuple[int, str, str], pybreaker.CircuitBreaker] = {}


class SharedStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage at one read and no write per successful call.

    pybreaker reads the state (a GET) and, on every success, sets the failure counter to zero
    (a SET: a write, so an fsync under ``appendfsync always``). Here the read takes the counter
    too (one MGET), and a success resets it only if it was not already zero. A failure another
    process counts between that read and this success is then kept, as if it came after the
    success: a valid order of two concurrent calls.
    """

    _failures_seen = True
    _primed: tuple[str | None, str | None] | None = None

    def prime(self, state: str | None, failures: str | None) -> None:
        """Take the next state read from these values, read just now with the attempt (``begin``)."""
        self._primed = (state, failures)

    @property
    def state(self) -> str:
        primed, self._primed = self._primed, None
        try:
            state, failures = primed or self._redis.mget(self._namespace("state"), self._namespace("fail_counter"))
        except redis.RedisError:
            self.logger.exception("RedisError: falling back to default circuit state")
            return str(self._fallback_circuit_state)
        if state is None:
            self._initialize_redis_state(self._fallback_circuit_state)
            return str(self._fallback_circuit_state)
        self._failures_seen = failures is None or int(failures) != 0
        return state.decode() if isinstance(state, bytes) else str(state)

    @state.setter
    def state(self, state: str) -> None:
        pybreaker.CircuitRedisStorage.state.fset(self, state)  # type: ignore[attr-defined]

    def reset_counter(self) -> None:
        if self._failures_seen:
            super().reset_counter()
            self._failures_seen = False

    def increment_counter(self) -> None:
        super().increment_counter()
        self._failures_seen = True


def breaker_for(
    url: str, agent: str, fail_max: int, reset_timeout: float, seen: tuple[str | None, str | None] | None = None
) -> pybreaker.CircuitBreaker:
    """This process's handle on ``agent``'s shared breaker (state lives in Redis at ``url``).
    ``seen``: its state and failure count as just read elsewhere, for the next call to use."""
    key = (os.getpid(), url, agent)
    breaker = _BREAKERS.get(key)
    if breaker is None:
        # pybreaker's Redis storage reads bytes: it needs a client that does not decode.
        client = redis_client(url, timeout=5, decode=False)
        for attempt in outlast_outages(120.0):  # pybreaker survives Redis errors, except while it starts
            with attempt:
                storage = SharedStorage(pybreaker.STATE_CLOSED, client, namespace=keys.breaker_namespace(agent))
        breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            state_storage=storage,
            name=agent,
            throw_new_error_on_trip=False,
        )
        _BREAKERS[key] = breaker
    if seen is not None:
        cast(SharedStorage, breaker._state_storage).prime(*seen)
    return breaker


def breaker_states(client: redis.Redis, agents: Iterable[str]) -> dict[str, str]:
    """``closed``, ``open`` or ``half-open`` per agent (closed when never tripped)."""
    names = list(agents)
    if not names:
        return {}
    values = client.mget([keys.breaker_state(name) for name in names])
    return {
        name: (value.decode() if isinstance(value, bytes) else str(value)) if value else "closed"
        for name, value in zip(names, values, strict=True)
    }
