"""The Lua prelude: the constants of ``keys.py`` as Lua locals, the first lines of every engine script.

The Lua scripts never spell a key or a limit themselves, so no constant lives in two languages.
"""

from __future__ import annotations

import json

from .. import keys
from ..status import NodeStatus, RunStatus

#: The constants of ``keys.py`` the scripts see, by name.
NAMES = (
    "HISTORY",
    "LEASES",
    "WATCHES",
    "WATCHED",
    "SENT_PREFIX",
    "LOOKED",
    "PUSHED",
    "ORDER_HEADER",
    "DELAYED",
    "METRICS",
    "FRONTIER",
    "RESERVERS",
    "OUTBOX",
    "OUTBOX_HELD_PREFIX",
    "REAPED_AT",
    "REAP_GAP_SECONDS",
    "WORKER_PREFIX",
    "RESERVED_PREFIX",
    "RUN_KEY_PREFIX",
    "DONE_CHANNEL",
    "EVENTS_CHANNEL",
    "AGENT_QUEUE_PREFIX",
    "RUN_HASHES",
    "SPENT_HASHES",
    "NODE_FIELDS",
    "LEASE_SECONDS",
    "MAX_RESULT_BYTES",
    "QUEUED_CHECK_SECONDS",
    "RUNS",
    "UNRECORDED",
    "RETIRED",
    "HISTORY_CAP",
    "TAKEN_AFTER_PREFIX",
    "SUBMITTING",
    "ROOT_SLICE",
    "READY_SLICE",
    "SUBMIT_STALL_SECONDS",
    "TAKE_NEXT_TRIES",
    "HISTORY_MAX_ENTRIES",
    "DURATION_BUCKETS",
    "LIMITS",
    "LIMITS_DECLARED",
    "LIMITS_SET",
    "LIMIT_PREFIX",
    "LIMITS_DUE",
    "CLOCK_CHANNEL",
    "WAKE_BUDGET",
    "WINDOWS",
    "READY_PREFIX",
    "READY_QUEUES",
    "RUN_SEQ",
    "RANK_SPAN",
    "DEFAULT_PRIORITY",
    "WAITS_DUE",
    "WAITERS_PREFIX",
    "EVENTS_PREFIX",
    "EVENT_RETENTION_SECONDS",
    "SCHEDULES_DUE",
    "SCHEDULES_BUFFERED",
    "SCHEDULE_PREFIX",
    "TEMPLATES",
)


def lua_prelude() -> str:
    """``NAMES`` and the statuses as Lua locals, and ``use_run``, which points a script's run-hash
    variables (RUN, STATUS, …) at one run."""
    lines = ["-- generated from coditect_tasks/keys.py when the scripts load; do not spell these in Lua"]
    # KEYS[1] is the cell's route key (keys.route): every key below is that cell's
    lines.append(f"local PREFIX = string.sub(KEYS[1], 1, {-len(keys.ROUTE.removeprefix(keys.PREFIX)) - 1})")
    for name in NAMES:
        lines.append(f"local {name} = {_value(name)}")
    for table, statuses in (("RUN_STATUS", RunStatus), ("NODE_STATUS", NodeStatus)):  # status.py's enums
        lines.append(f"local {table} = {{{', '.join(f'{s.name} = {_lua(s.value)}' for s in statuses)}}}")
    # One variable per run hash (RUN, STATUS, …, TRACE), pointed at a run by use_run(run_id); a
    # node's scripts point them at its run again and again (2 µs each time they are rebuilt)
    names = [suffix.upper() for suffix in keys.RUN_HASHES]
    lines.append(f"local RUN_ID, P, {', '.join(names)}")
    lines.append("local function use_run(run_id)")
    lines.append("  if run_id == RUN_ID then return end")
    lines.append("  RUN_ID, P = run_id, RUN_KEY_PREFIX .. run_id .. ':'")
    lines.extend(f"  {name} = P .. {_lua(suffix)}" for name, suffix in zip(names, keys.RUN_HASHES, strict=True))
    lines.append("end")
    # Redis's clock (s), the one every script and server shares: read once a call (a script is one
    # instant to everything else, and a node's transitions took four reads of it)
    lines.append("local the_time")
    lines.append("local function server_now()")
    lines.append("  if not the_time then")
    lines.append("    local t = redis.call('TIME')")
    lines.append("    the_time = tonumber(t[1]) + tonumber(t[2]) / 1e6")
    lines.append("  end")
    lines.append("  return the_time")
    lines.append("end")
    return "\n".join(lines) + "\n"


#: Names whose value is the same in every cell: pub/sub channels reach every node of a cluster.
ABSOLUTE = frozenset({"CLOCK_CHANNEL"})


def _value(name: str) -> str:
    """Constant ``name`` in Lua: a key of the script's cell, relative to its PREFIX."""
    value = getattr(keys, name)
    if isinstance(value, str) and value.startswith(keys.PREFIX) and name not in ABSOLUTE:
        return f"PREFIX .. {_lua(value.removeprefix(keys.PREFIX))}"
    return _lua(value)


def _lua(value: str | int | float | tuple[str | float, ...]) -> str:
    if isinstance(value, tuple):
        return "{" + ", ".join(_lua(v) for v in value) + "}"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string literal is a valid Lua string literal for these ASCII names
    return format(value, "g") if isinstance(value, float) else str(value)
