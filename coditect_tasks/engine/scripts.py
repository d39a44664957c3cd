"""The engine's Lua scripts, loaded once: each file after the prelude and the shared functions.

The prelude (``keys.lua_prelude``) renders the Python constants a script uses (key prefixes,
statuses, limits), so no constant lives in two languages.
"""

from __future__ import annotations

from importlib import resources

from .. import keys


def _load_scripts() -> dict[str, str]:
    folder = resources.files(__package__) / "lua"
    common = keys.lua_prelude() + (folder / "common.lua").read_text()
    return {
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
            "reserve",
            "reclaim",
            "roots",
            "outbox",
        )
    }


SCRIPTS = _load_scripts()
