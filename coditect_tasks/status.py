"""Run and node statuses: one enum each, the terminal set and the public mapping, written once.

The engine's Lua scripts write these strings into Redis; Python reads them back
through these enums. A run passes through two internal states that callers never
see: ``submitting`` (its hashes are being written) and ``failing`` (a node failed,
running nodes may still finish); both read as ``running``.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    SUBMITTING = "submitting"
    RUNNING = "running"
    FAILING = "failing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class NodeStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    WAITING = "waiting"  # a waiting node (an event, approvals, a sleep): no worker holds it
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


#: Run statuses after which nothing changes.
TERMINAL: frozenset[str] = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


def public(status: str) -> str:
    """The status a caller sees: ``submitting`` and ``failing`` are still ``running``."""
    if status in (RunStatus.SUBMITTING, RunStatus.FAILING):
        return RunStatus.RUNNING.value
    return status
