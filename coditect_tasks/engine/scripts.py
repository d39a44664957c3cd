"""The engine's Lua scripts, loaded once: each file after the prelude and the shared functions.

The prelude (``prelude.lua_prelude``) renders the Python constants a script uses (key prefixes,
statuses, limits), so no constant lives in two languages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any

from .. import keys
from .prelude import lua_prelude

#: The shared functions, by concern, in the order they build on each other (Lua locals must be
#: defined before use): helpers, the frontier and metrics, the history, limits, queueing (and the
#: waiters of limits, the parking of waiting nodes), attempts, waits, spawns (and starting and
#: cancelling runs), take-next.
COMMON = ("base", "frontier", "history", "limits", "queueing", "attempts", "waits", "spawns", "take_next")


#: Scripts that need only the prelude: called often (on every cell every second, on every outbox
#: batch, on every message a worker receives), they cost a few microseconds where a script that
#: defines the shared functions costs tens.
LIGHT = ("tick", "outbox", "reserve")


def _load_scripts() -> dict[str, str]:
    folder = resources.files(__package__) / "lua"
    common = lua_prelude() + "\n".join((folder / "common" / f"{part}.lua").read_text() for part in COMMON)
    light = {name: lua_prelude() + (folder / f"{name}.lua").read_text() for name in LIGHT}
    return light | {
        name: common + "\n" + (folder / f"{name}.lua").read_text()
        for name in (
            "submit",
            "begin",
            "complete",
            "fail",
            "fanout",
            "handoff",
            "retire",
            "retry",
            "cancel",
            "renew",
            "reap",
            "reroute",
            "reclaim",
            "roots",
            "limit",
            "pace",
            "window",
            "event",
            "approve",
            "spawn",
            "output",
            "schedule",
        )
    }


SCRIPTS = _load_scripts()


class Routed:
    """A registered engine script that names its cell's route key (``keys.route``) as its one key:
    the script works on that cell's keys, and a Redis Cluster client sends it to the node of the
    cell's slot."""

    def __init__(self, client: Any, name: str) -> None:
        self._script = client.register_script(SCRIPTS[name])
        self.sha: str = self._script.sha

    def __call__(self, args: Sequence[Any], client: Any = None, cell: int = 0) -> Any:
        return self._script(keys=[keys.route(cell)], args=args, client=client)


def registered(client: Any, names: Iterable[str] = ()) -> dict[str, Routed]:
    """``names`` (every script without them) registered on ``client``, sync or asyncio."""
    return {name: Routed(client, name) for name in (names or SCRIPTS)}


def named(reply: str | bytes) -> dict[str, Any]:
    """A script's named reply (a table it returned as ``cjson.encode``): every reply of more than
    two values is one, decoded here. An empty list comes back as ``{}`` (cjson cannot tell)."""
    decoded: dict[str, Any] = json.loads(reply)
    return decoded
