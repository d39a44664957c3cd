"""Moving an earlier release's live state in Redis to this release's key layout.

Releases before the Redis Cluster support kept every key under ``coditect:`` with no hash tag;
this one keeps them under ``coditect:{0}:`` (``keys.PREFIX``), so that on a cluster every script's
keys share one slot. ``tag_keys`` renames what an earlier release left (runs in flight and in
their retention window, limits an operator set, idempotency keys, breakers, the history stream
with its recorder's place in it) once no process of that release runs, and before any process of
this one starts: a worker of each layout at once would each see half the state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from . import keys
from .errors import UpgradeRefusedError

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
    """A key of this release's layout: in a cell (``coditect:{<tag>}:``)."""
    return key.startswith(keys.UNTAGGED_PREFIX + "{")


def tag_keys(client: redis.Redis) -> Tagged:
    """Rename every key of the earlier layout into this one. ``UpgradeRefusedError``, with nothing
    renamed, while a worker of that release is live, or once a process of this release has written
    keys of its own (its indexes would not know the runs renamed under them)."""
    found = untagged(client)
    live = sorted(key.removeprefix(UNTAGGED_WORKER_PREFIX) for key in found if key.startswith(UNTAGGED_WORKER_PREFIX))
    if live:
        shown = ", ".join(live[:3]) + (", …" if len(live) > 3 else "")
        raise UpgradeRefusedError(
            f"{len(live)} worker(s) of the earlier release are live ({shown}): stop every process of that release first"
        )
    ours = next(iter(client.scan_iter(match=f"{keys.PREFIX}*", count=1000)), None)
    if found and ours is not None:
        raise UpgradeRefusedError(
            f"this release has written keys already ({ours}): run upgrade-keys before any of its processes "
            "starts, or stop them and delete their keys (coditect:{0}:*) first"
        )
    done = Tagged()
    for key in found:
        if client.renamenx(key, keys.PREFIX + key.removeprefix(keys.UNTAGGED_PREFIX)):
            done.renamed += 1
        elif client.exists(key):  # (gone meanwhile: expired)
            done.kept.append(key)
    return done
