"""Moving an earlier release's live state in Redis to this release's key layout.

Releases before the Redis Cluster support kept every key under ``coditect:`` with no hash tag;
this one keeps them under ``coditect:{0}:`` (``keys.PREFIX``), so that on a cluster every script's
keys share one slot. ``tag_keys`` renames what an earlier release left (runs in flight and in
their retention window, limits an operator set, idempotency keys, breakers, the history stream
with its recorder's place in it) once no process of that release runs: a worker of each layout
at once would each see half the state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from . import keys
from .errors import LiveWorkersError

#: Where an earlier release kept its live workers' descriptions (expiring with their heartbeats).
UNTAGGED_WORKER_PREFIX = f"{keys.UNTAGGED_PREFIX}worker:"


@dataclass
class Tagged:
    """What ``tag_keys`` did: keys renamed, and keys left because this layout has them already."""

    renamed: int = 0
    kept: list[str] = field(default_factory=list)


def untagged(client: redis.Redis) -> list[str]:
    """The keys an earlier release wrote (``coditect:`` without this release's tag)."""
    return [key for key in client.scan_iter(match=f"{keys.UNTAGGED_PREFIX}*", count=1000) if not _tagged(key)]


def _tagged(key: str) -> bool:
    return key.startswith(keys.PREFIX)


def tag_keys(client: redis.Redis) -> Tagged:
    """Rename every key of the earlier layout into this one (``LiveWorkersError`` while a worker
    of that release is live). A key whose new name exists already is left as it is, and named."""
    found = untagged(client)
    live = sorted(key.removeprefix(UNTAGGED_WORKER_PREFIX) for key in found if key.startswith(UNTAGGED_WORKER_PREFIX))
    if live:
        raise LiveWorkersError(live)
    done = Tagged()
    for key in found:
        if client.renamenx(key, keys.PREFIX + key.removeprefix(keys.UNTAGGED_PREFIX)):
            done.renamed += 1
        elif client.exists(key):  # (gone meanwhile: expired)
            done.kept.append(key)
    return done
