"""The Lua scripts take every key name and shared limit from Python (``keys.lua_prelude``), never their own copy."""

from __future__ import annotations

import re
from pathlib import Path

from coditect_tasks import keys
from coditect_tasks.dag.engine import SCRIPTS

LUA = Path(keys.__file__).parent / "dag" / "lua"


def test_no_script_spells_a_key_name_or_a_run_hash() -> None:
    found = []
    for path in sorted(LUA.glob("*.lua")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("--", 1)[0]
            if keys.PREFIX in code or re.search(r"P \.\. '", code) or f"'{keys.AGENT_QUEUE_PREFIX}" in code:
                found.append(f"{path.name}:{number}: {line.strip()}")
    assert not found, "spelled in Lua instead of taken from keys.py:\n" + "\n".join(found)


def test_no_script_defines_a_constant_python_also_defines() -> None:
    names = set(re.findall(r"^local (\w+) =", keys.lua_prelude(), flags=re.M))
    redefined = [
        f"{path.name}: {name}"
        for path in sorted(LUA.glob("*.lua"))
        for name in re.findall(r"^local (\w+) =", path.read_text(), flags=re.M)
        if name in names
    ]
    assert not redefined, redefined


def test_the_prelude_carries_pythons_values() -> None:
    prelude = keys.lua_prelude()
    assert f'local LEASES = "{keys.LEASES}"' in prelude
    assert f'local UNRECORDED = "{keys.UNRECORDED}"' in prelude
    assert f"local LEASE_SECONDS = {keys.LEASE_SECONDS:g}" in prelude
    assert '  TRACE = P .. "trace"' in prelude  # one variable per run hash, from keys.RUN_HASHES
    assert all(script.startswith(prelude) for script in SCRIPTS.values())
