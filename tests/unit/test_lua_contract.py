"""The Lua scripts take every key name and shared limit from Python (``engine.prelude.lua_prelude``), never their own copy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from coditect_tasks import keys
from coditect_tasks.engine.prelude import lua_prelude
from coditect_tasks.engine.scripts import BASIC, COMMON, SCRIPTS, tabled, trimmed
from coditect_tasks.status import NodeStatus, RunStatus

LUA = Path(keys.__file__).parent / "engine" / "lua"
SCRIPT_FILES = sorted(LUA.rglob("*.lua"))
STATUSES = {s.value for s in (*RunStatus, *NodeStatus)}


def test_the_scripts_are_where_the_checks_look() -> None:
    assert {path.relative_to(LUA).as_posix() for path in SCRIPT_FILES} == {
        *(f"{name}.lua" for name in SCRIPTS),
        *(f"common/{part}.lua" for part in (*BASIC, *COMMON)),
    }


def test_no_script_spells_a_status() -> None:
    """Statuses come from status.py's enums, rendered into the prelude as RUN_STATUS and NODE_STATUS."""
    literal = re.compile(r"['\"](" + "|".join(sorted(STATUSES)) + r")['\"]")
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in SCRIPT_FILES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert not found, "a status spelled in Lua instead of RUN_STATUS/NODE_STATUS:\n" + "\n".join(found)


def test_every_status_a_script_names_exists() -> None:
    """A misspelt ``NODE_STATUS.QUEUD`` would be nil in Lua, silently."""
    known = {"RUN_STATUS": {s.name for s in RunStatus}, "NODE_STATUS": {s.name for s in NodeStatus}}
    used = {
        (table, name)
        for path in SCRIPT_FILES
        for table, name in re.findall(r"\b(RUN_STATUS|NODE_STATUS)\.(\w+)", path.read_text())
    }
    assert used and not [f"{table}.{name}" for table, name in used if name not in known[table]]


def test_no_script_spells_a_key_name_or_a_run_hash() -> None:
    found = []
    for path in SCRIPT_FILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("--", 1)[0]
            if keys.PREFIX in code or re.search(r"P \.\. '", code) or f"'{keys.AGENT_QUEUE_PREFIX}" in code:
                found.append(f"{path.name}:{number}: {line.strip()}")
    assert not found, "spelled in Lua instead of taken from keys.py:\n" + "\n".join(found)


def test_no_script_defines_a_constant_python_also_defines() -> None:
    names = set(re.findall(r"^local (\w+) =", lua_prelude(), flags=re.M))
    redefined = [
        f"{path.name}: {name}"
        for path in SCRIPT_FILES
        for name in re.findall(r"^local (\w+) =", path.read_text(), flags=re.M)
        if name in names
    ]
    assert not redefined, redefined


def test_the_prelude_carries_pythons_values() -> None:
    prelude = lua_prelude()
    # every key is its cell's: relative to the prefix of the route key the script is called with
    assert "local PREFIX = string.sub(KEYS[1], 1, -6)" in prelude and keys.route(0).endswith(":route")
    assert f'local LEASES = PREFIX .. "{keys.LEASES.removeprefix(keys.PREFIX)}"' in prelude
    assert f'local UNRECORDED = PREFIX .. "{keys.UNRECORDED.removeprefix(keys.PREFIX)}"' in prelude
    assert f'local CLOCK_CHANNEL = "{keys.CLOCK_CHANNEL}"' in prelude  # one channel for every cell
    assert f"local LEASE_SECONDS = {keys.LEASE_SECONDS:g}" in prelude
    assert '  TRACE = P .. "trace"' in prelude  # one variable per run hash, from keys.RUN_HASHES
    # each script starts with the prelude's constants it needs, held in its table, in order
    names = re.findall(r"^local (\w+) =", prelude, flags=re.M)
    for name, script in SCRIPTS.items():
        head = re.findall(r"^E\.(\w+) =", script, flags=re.M)
        head = [constant for constant in head if constant in names]
        assert head[0] == "PREFIX" and head == sorted(head, key=names.index), name


def test_a_script_carries_the_shared_definitions_it_reaches_and_no_others() -> None:
    shared = "\n".join(
        [
            "local A = 1",
            "local B = 2  -- f uses B",
            "local f_later, unused_later",
            "local function helper(x)",
            "  return x + A",
            "end",
            "local function unused(x)",
            "  return helper(x) -- 'f_later'",
            "end",
            "use_it(A)",
            "f_later = function()",
            "  return helper(B)",
            "end",
            "",
        ]
    )
    kept = trimmed(shared, "return f_later() .. 'unused'\n")
    assert kept.splitlines() == [
        "local A = 1",
        "local B = 2  -- f uses B",
        "local f_later, unused_later",
        "local function helper(x)",
        "  return x + A",
        "end",
        "use_it(A)",
        "f_later = function()",
        "  return helper(B)",
        "end",
    ]


def test_a_script_holds_the_shared_names_in_one_table() -> None:
    """A closure finds a table in one step; it looked each captured local up among all of them."""
    shared = "\n".join(
        [
            "local A, B = 'A', {A = 1}  -- A",
            "local later",
            "local function helper(x, n)",
            "  return {A = A, n = x.A, B[n], [A] = 1}, 'helper'",
            "end",
            "later = function() return helper(B, 1e3) end",
            "",
        ]
    )
    assert tabled(shared, "return later(A)\n").splitlines() == [
        "local E = {} E.A, E.B = 'A', {A = 1}  -- A",
        "",
        "function E.helper(x, n)",
        "  return {A = E.A, n = x.A, E.B[n], [E.A] = 1}, 'helper'",
        "end",
        "E.later = function() return E.helper(E.B, 1e3) end",
        "",
        "return E.later(E.A)",
    ]


@pytest.mark.parametrize(
    "inner",
    [
        "local function f(A) return A end",
        "local function f() local A = 1 return A end",
        "for _, A in ipairs({}) do end",
    ],
)
def test_a_shared_name_declared_again_in_a_function_is_refused(inner: str) -> None:
    with pytest.raises(ValueError, match=r"declared again in a function: '(local|for) .*E\.A"):
        tabled("local A = 1\n", "\n" + inner + "\n")


def test_a_light_engine_script_is_short() -> None:
    """``renew`` runs on every lease renewal: it carries the fence and the lease, not take-next."""
    assert "function E.fenced" in SCRIPTS["renew"]
    assert "take_next" not in SCRIPTS["renew"]
    assert len(SCRIPTS["renew"]) < len(SCRIPTS["complete"]) / 5


def test_no_script_calls_incrbyfloat() -> None:
    """Called from a script, INCRBYFLOAT corrupted the heap of the embedded Redis (6.2, libc malloc):
    it rewrites its arguments past the script's buffer. HINCRBYFLOAT keeps its argument count."""
    found = [path.name for path in SCRIPT_FILES if re.search(r"['\"]INCRBYFLOAT['\"]", path.read_text(), re.I)]
    assert not found, found
