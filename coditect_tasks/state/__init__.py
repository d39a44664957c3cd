"""Shared state for agents that must not trample each other: lease locks that hand out fencing
tokens (``lock``), and a key-value store that refuses a write carrying an older token than one
that already wrote there (``get``, ``put``). Together they hold Kleppmann's rule: a holder that
was paused past its lease (GC, SIGSTOP, a partition) and wakes up believing it still holds the
lock cannot overwrite what the next holder wrote. S3 artifacts take the same token (``artifacts``).
"""

from __future__ import annotations

from .locks import Lease, Lock, lock
from .values import get, put

__all__ = ["Lease", "Lock", "get", "lock", "put"]
