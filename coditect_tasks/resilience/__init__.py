"""Resilience: retry policies (``retry``), circuit breakers shared through Redis
(``breaker``), and leases that let a dead worker's node run again within seconds
(``lease``). Fallback routing is the engine's ``reroute``, driven by the breaker."""

from __future__ import annotations

from .retry import RetryPolicy

__all__ = ["RetryPolicy"]
