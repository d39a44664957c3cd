"""Cells: where a run lives, and the engine's global structures read whole.

A cell is one Redis Cluster hash tag: a run's keys and its cell's share of the global structures
(leases, the history stream, the outbox, the counters …) share one slot, so a script touches one
node. A run id names its cell. On a cluster of many cells every counter, the frontier and every
backlog is split over the cells; a reader adds the shares up, read in one round trip.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

#: Cells a Redis Cluster's run state is spread over at most (``CODITECT_REDIS_CELLS``).
MAX_CELLS = 256
#: Hex digits of a run id that name its cell, after its 32 random ones (a run of cell 0 has none).
CELL_DIGITS = 2
RUN_ID_DIGITS = 32


@functools.cache
def cell_tag(cell: int) -> str:
    """The hash tag of cell ``cell``: cell 0's is ``0`` (every key before cells existed), and the
    others' are chosen so that cells 0..n-1 fall on slots spread evenly (bit-reversed order), so a
    cluster's primaries share them whatever ``n``: each cell's keys live on one slot, and a script
    only ever touches one cell's."""
    if cell == 0:
        return "0"
    if not 0 < cell < MAX_CELLS:
        raise ValueError(f"cell {cell} is outside 0..{MAX_CELLS - 1}")
    width = REDIS_CLUSTER_HASH_SLOTS // MAX_CELLS
    target = int(f"{cell:08b}"[::-1], 2) * width
    tries = (f"c{cell}.{n}" for n in range(1_000_000))
    return next(tag for tag in tries if target <= key_slot(tag.encode()) < target + width)


def cell_prefix(cell: int) -> str:
    """``PREFIX`` of cell ``cell``: every key of its runs and of its share of the global structures."""
    return f"coditect:{{{cell_tag(cell)}}}:"


def in_cell(key: str, cell: int) -> str:
    """``key`` (one of ``keys.py``'s, named for cell 0) as cell ``cell`` holds it."""
    return key if cell == 0 else cell_prefix(cell) + key.removeprefix(cell_prefix(0))


def cell_of(run_id: str) -> int:
    """The cell that holds run ``run_id``: named by its last two hex digits (``new_run_id``); a run
    id of 32 digits (every run before cells existed) is cell 0's."""
    if len(run_id) != RUN_ID_DIGITS + CELL_DIGITS:
        return 0
    try:
        return int(run_id[RUN_ID_DIGITS:], 16)
    except ValueError:
        return 0


def new_run_id(cell: int = 0) -> str:
    """A fresh run id of cell ``cell``: 32 random hex digits, then the cell's two (none for cell 0,
    so a deployment of one cell makes the ids it always made)."""
    return run_id_in(secrets.token_hex(RUN_ID_DIGITS // 2), cell)


def run_id_in(run_id: str, cell: int) -> str:
    """Run id ``run_id``'s random digits as an id of cell ``cell``."""
    random = run_id[:RUN_ID_DIGITS]
    return random if cell == 0 else f"{random}{cell:0{CELL_DIGITS}x}"


def entry_id(raw: str, cell: int) -> str:
    """A history stream id as the history and every reader name it: each cell's stream numbers its
    own entries, so ids of cells other than 0 carry their cell (``<ms>-<seq>@<cell>``)."""
    return raw if cell == 0 else f"{raw}@{cell}"


def shares(client: Any, key: str, cells: int) -> Any:
    """Every cell's share of hash ``key`` (``keys.METRICS``, ``keys.FRONTIER``), in one round trip
    (an awaitable on an event loop): add them up with ``added``."""
    pipe = client.pipeline(transaction=False)
    for cell in range(cells):
        pipe.hgetall(in_cell(key, cell))
    return pipe.execute()


def added(shares: Iterable[Mapping[Any, Any]]) -> dict[str, str]:
    """The cells' ``shares`` of one hash as one: each field the sum of its values, as the strings
    Redis gives (a whole number stays whole)."""
    totals: dict[str, float] = {}
    whole: dict[str, bool] = {}
    for share in shares:
        for field, value in share.items():
            name, text = str(field), str(value)
            totals[name] = totals.get(name, 0.0) + float(text)
            whole[name] = whole.get(name, True) and text.lstrip("-").isdigit()
    return {name: str(int(total)) if whole[name] else repr(total) for name, total in totals.items()}


def summed(client: Any, key: str, cells: int) -> dict[str, str]:
    """Hash ``key`` added up over the cells (``shares``, ``added``), on a sync client."""
    return added(shares(client, key, cells))


def counted(client: Any, command: str, key: str, cells: int) -> int:
    """``command`` (``xlen``, ``zcard``, ``llen``) of ``key`` added up over the cells."""
    pipe = client.pipeline(transaction=False)
    for cell in range(cells):
        getattr(pipe, command)(in_cell(key, cell))
    return sum(int(n) for n in pipe.execute())
