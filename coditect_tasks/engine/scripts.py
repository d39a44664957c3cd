"""The engine's Lua scripts, loaded once: each file after the prelude and the shared functions.

The prelude (``prelude.lua_prelude``) renders the Python constants a script uses (key prefixes,
statuses, limits), so no constant lives in two languages. Redis runs a script's top level on every
call, so each shared function is a closure built per call. A script carries only the constants and
shared functions it reaches (``trimmed``), and holds them in one table (``tabled``): a closure that
named each as a local of the script looked every one up among all the script's captured locals,
which cost the hot scripts about 50 µs a call before their first command, 17 µs in a table.
"""

from __future__ import annotations

import functools
import json
import re
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
#: Shared functions that go with the prelude: the light scripts reach them too (a node's marks).
BASIC = ("marks",)


#: Scripts that reach only the prelude, never the shared functions (nor their per-call start, which
#: reads a run id and a time from ARGV): called often (on every cell every second, on every outbox
#: batch, on every message a worker receives), they cost a few microseconds.
LIGHT = ("tick", "outbox", "reserve")


#: A top-level statement of the prelude or a shared file begins at column 0 with a letter (the
#: ``end``, ``else`` … of a statement's block go on with it).
_STATEMENT = re.compile(r"^(?!(?:end|else|elseif|until)\b)[A-Za-z_]")
#: The names a top-level statement defines: ``local function f``, ``local a, b = …`` or ``local a, b``
#: (a forward declaration), ``f = function`` (the body of a forward-declared local).
_DEFINES = re.compile(r"^(?:local\s+function\s+(\w+)|local\s+([\w\s,]+?)\s*(?:=|$|--)|(\w+)\s*=\s*function\b)")
#: Lua's comments and strings, skipped, or a name (group 1).
_TOKEN = re.compile(r"""--\[\[.*?\]\]|--[^\n]*|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|([A-Za-z_]\w*)""", re.S)


def _names(code: str) -> set[str]:
    """The names ``code`` mentions, outside its comments and strings."""
    return {found.group(1) for found in _TOKEN.finditer(code) if found.group(1)}


def _statements(source: str) -> list[str]:
    """``source``'s top-level statements, each with the comment lines below it."""
    statements: list[str] = []
    pending: list[str] = []
    for line in source.splitlines(keepends=True):
        if _STATEMENT.match(line):
            statements.append("".join(pending))
            pending = []
        pending.append(line)
    statements.append("".join(pending))
    return [statement for statement in statements if statement.strip()]


def _defined(statement: str) -> set[str]:
    code = next((line for line in statement.splitlines() if _STATEMENT.match(line)), "")
    found = _DEFINES.match(code)
    if not found:
        return set()
    names = found.group(1) or found.group(3) or found.group(2)
    return {name.strip() for name in names.split(",")}


def trimmed(shared: str, body: str) -> str:
    """``shared`` (the prelude and the shared files) cut to the statements ``body`` reaches: every
    statement that defines nothing (a top-level call), and every definition of a name a kept
    statement mentions, in their order. Names are read outside Lua's comments and strings."""
    statements = _statements(shared)
    defines = [_defined(statement) for statement in statements]
    keep = [not names for names in defines]
    wanted = _names(body).union(*(_names(s) for s, kept in zip(statements, keep, strict=True) if kept))
    grown = True
    while grown:
        grown = False
        for i, names in enumerate(defines):
            if not keep[i] and names & wanted:
                keep[i] = grown = True
                wanted |= _names(statements[i])
    return "".join(statement for statement, kept in zip(statements, keep, strict=True) if kept)


#: The table a script holds the shared names in (``tabled``).
TABLE = "E"
#: Lua's tokens ``tabled`` tells apart: comments and strings (kept as they are), numbers, names, and
#: the punctuation around a name that says what it is (a field, a table key, an assignment).
_LEX = re.compile(
    r"""(?P<skip>--\[\[.*?\]\]|--[^\n]*|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|\d+(?:\.\d+)?)"""
    r"""|(?P<name>[A-Za-z_]\w*)|(?P<punct>==|~=|<=|>=|\.\.\.|\.\.|[{}\[\].:=,()])""",
    re.S,
)
#: A shared name declared again inside a function (a parameter, a local, a loop variable) after
#: ``tabled`` rewrote it: Lua would read the table's instead.
_SHADOWED = re.compile(
    rf"\blocal\s[^=\n]*\b{TABLE}\."  # a local
    rf"|\bfunction\s*[\w.:]*\([^)]*\b{TABLE}\."  # a parameter
    rf"|\bfor\s[^=\n]*\b{TABLE}\.[^\n]*\b(?:in|=)\b"  # a loop variable
)


def shared_names(shared: str) -> frozenset[str]:
    """The names the top-level statements of ``shared`` define."""
    return frozenset().union(*(_defined(statement) for statement in _statements(shared)))


def tabled(shared: str, body: str, names: frozenset[str] | None = None) -> str:
    """``shared`` then ``body``, every top-level name of ``shared`` held in the table ``TABLE``:
    ``local function f`` becomes ``function E.f``, ``local a, b = …`` becomes ``E.a, E.b = …``, a
    forward declaration goes, and every use of such a name becomes ``E.<name>`` (not a field
    ``t.name``, nor a key ``{name = …}``). Lines stay where they were, for Lua's error messages. A
    shared name declared again inside a function is an error here, not a wrong read in Redis.
    ``names``: the names of the whole text ``shared`` was trimmed from (``trimmed`` keeps every one
    the kept text uses), so each shared statement is rewritten once for every script."""
    statements = _statements(shared)
    names = names if names is not None else shared_names(shared)
    source = "".join(_held(statement, names) for statement in statements) + "\n" + _renamed(body, names)
    shadowed = _SHADOWED.search(source)
    if shadowed:
        line = source.count("\n", 0, shadowed.start())
        raise ValueError(f"a shared Lua name is declared again in a function: {source.splitlines()[line].strip()!r}")
    return f"local {TABLE} = {{}} " + source


@functools.cache
def _held(statement: str, names: frozenset[str]) -> str:
    """A top-level ``statement`` with its ``local`` declaration made an assignment to the table (a
    forward declaration gone) and its uses of ``names`` renamed."""
    first, newline, rest = statement.partition("\n")
    if _STATEMENT.match(first):  # else the comments before the first statement
        if re.match(r"local\s+function\s", first):
            first = re.sub(r"^local\s+function\s+", "function ", first)
        elif re.match(r"local\s[\w\s,]*?(?:$|--)", first):
            first = ""  # a forward declaration: the table holds the name once it is assigned
        elif first.startswith("local "):
            first = first.removeprefix("local ")
    return _renamed(first + newline + rest, names)


def _renamed(source: str, names: frozenset[str]) -> str:
    """``source`` with each use of ``names`` (not a field, nor a table key) as ``TABLE.<name>``."""
    out: list[str] = []
    at, depth = 0, 0
    code = [token for token in _LEX.finditer(source) if not token.group("skip")]  # what Lua reads
    for i, token in enumerate(code):
        out.append(source[at : token.start()])
        at = token.end()
        text = token.group(0)
        depth += {"{": 1, "}": -1}.get(text, 0)
        if token.group("name") and text in names:
            before = code[i - 1].group(0) if i else ""
            after = code[i + 1].group(0) if i + 1 < len(code) else ""
            key = depth > 0 and before in ("{", ",") and after == "="
            if before not in (".", ":") and not key:
                text = f"{TABLE}.{text}"
        out.append(text)
    out.append(source[at:])
    return "".join(out)


def _shared(folder: Any, parts: Iterable[str]) -> str:
    return "\n".join((folder / "common" / f"{part}.lua").read_text() for part in parts)


def _load_scripts() -> dict[str, str]:
    folder = resources.files(__package__) / "lua"
    prelude = lua_prelude() + _shared(folder, BASIC)
    common = prelude + _shared(folder, COMMON)
    names = (
        *LIGHT,
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
    bodies = {name: (folder / f"{name}.lua").read_text() for name in names}
    kinds = {False: (common, shared_names(common)), True: (prelude, shared_names(prelude))}
    scripts = {}
    for name, body in bodies.items():
        shared, defined = kinds[name in LIGHT]
        scripts[name] = tabled(trimmed(shared, body), body, defined)
    return scripts


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
