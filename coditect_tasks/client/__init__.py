"""The one client layer: what orchestrator code, the CLI, the HTTP API and the Locust user submit
and read runs through.

``core`` holds every behaviour, with no I/O; ``sync`` (``Client``, ``DagRun``, ``submit``) and
``aio`` (``AsyncClient``, ``AsyncRun``) only perform its steps.
"""

from __future__ import annotations

from .aio import AsyncClient, AsyncRun
from .sync import Client, DagRun, default_client, submit

__all__ = ["AsyncClient", "AsyncRun", "Client", "DagRun", "default_client", "submit"]
