"""Retry policies now; circuit breakers, fallback routing and failover later."""

from __future__ import annotations

from .retry import RetryPolicy

__all__ = ["RetryPolicy"]
