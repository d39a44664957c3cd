"""Retry policy: how many attempts, and how long to wait between them.

Pure arithmetic with no Celery import, so it is unit-tested in microseconds and
shared by agent tasks (through Celery's retry machinery) and platform code.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InvalidArgumentError


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with "equal jitter".

    ``max_attempts`` counts the first try: 1 means never retry. The wait before
    attempt ``n + 1`` is drawn from ``[d/2, d]`` where
    ``d = min(backoff_max, backoff * 2 ** (n - 1))`` seconds, so concurrent
    failures spread out but never retry sooner than half the nominal delay.
    """

    max_attempts: int = 1
    backoff: float = 1.0
    backoff_max: float = 60.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InvalidArgumentError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.backoff < 0 or self.backoff_max < 0:
            raise InvalidArgumentError("backoff and backoff_max must not be negative")

    @classmethod
    def retries(
        cls,
        count: int,
        backoff: float = 1.0,
        backoff_max: float = 60.0,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
    ) -> RetryPolicy:
        """A policy allowing ``count`` retries after the first attempt."""
        return cls(max_attempts=count + 1, backoff=backoff, backoff_max=backoff_max, retry_on=retry_on)

    def should_retry(self, attempt: int, error: BaseException | None = None) -> bool:
        """Whether failed attempt number ``attempt`` (1-based) may be followed by another."""
        return attempt < self.max_attempts and (error is None or isinstance(error, self.retry_on))

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        nominal = min(self.backoff_max, self.backoff * 2.0 ** (attempt - 1))
        if not self.jitter:
            return nominal
        return nominal / 2 + rand() * nominal / 2
