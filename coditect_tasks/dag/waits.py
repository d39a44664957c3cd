"""Waiting nodes: a node that calls no agent and waits, holding no worker, for an event, for
people's approvals, or for a time.

``wait`` ends with the data of an event of its name and key: the first sent while it waits, or
the newest sent up to ``lookback`` seconds before it began; ``approval`` with ``approvers`` approvals from distinct
identities, or fails at one rejection; ``sleep`` at its deadline. ``timeout`` fails a wait or an
approval that is still waiting then, or with ``on_timeout: skip`` skips it (result null) and its
successors go on. The engine keeps every deadline absolute, in Redis, so a
restart of anything delays none of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: What a node of each kind is written as, in a DAG file: ``{id: ci, wait: {event: ci.finished}}``.
KINDS = ("wait", "approval", "sleep")
#: ``{name}`` (the node's ``params[name]``) or ``{node.field}`` (a predecessor's result's field).
KEY_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)(?:\.([A-Za-z_][A-Za-z0-9_-]*))?\}")
#: What a wait or an approval does at its timeout: fail (the run fails), or skip (its successors go on).
ON_TIMEOUT = ("fail", "skip")
#: Seconds a wait, an approval or a sleep may last at most (a year).
MAX_SECONDS = 366 * 24 * 3600.0
#: An event's name: plain, as it goes into Redis keys (``ci.finished``, ``deploy:done``).
EVENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


@dataclass(frozen=True)
class Wait:
    """What a waiting node waits for (``kind`` one of ``KINDS``)."""

    kind: str
    event: str | None = None
    key: str = ""
    lookback: float = 0.0
    approvers: int = 1
    seconds: float | None = None
    until: str | None = None
    timeout: float | None = None
    on_timeout: str = "fail"

    def to_json(self) -> dict[str, Any]:
        fields: dict[str, Any]
        if self.kind == "wait":
            fields = {"event": self.event, "key": self.key or None, "lookback": self.lookback or None}
        elif self.kind == "approval":
            fields = {"approvers": self.approvers}
        else:
            fields = {"seconds": self.seconds, "until": self.until}
        if self.kind != "sleep":
            fields["timeout"] = self.timeout
            fields["on_timeout"] = None if self.on_timeout == "fail" else self.on_timeout
        return {k: v for k, v in fields.items() if v is not None}

    def references(self) -> list[tuple[str, str | None]]:
        """The ``{…}`` fields of the key: (param, None) or (predecessor, field)."""
        return [(m[1], m[2]) for m in KEY_FIELD.finditer(self.key)]

    def engine(self) -> dict[str, Any]:
        """What the engine's scripts read (the node description's ``w``): the kind, and each
        field it needs under one letter."""
        out: dict[str, Any] = {"k": self.kind}
        for letter, value in (
            ("e", self.event),
            ("key", self.key or None),
            ("l", self.lookback or None),
            ("n", self.approvers if self.kind == "approval" else None),
            ("s", self.seconds),
            ("u", datetime.fromisoformat(self.until).timestamp() if self.until else None),
            ("t", self.timeout),
            ("o", 1 if self.on_timeout == "skip" else None),
        ):
            if value is not None:
                out[letter] = value
        return out


def parse(kind: str, raw: Any) -> Wait | str:
    """The ``Wait`` a node's ``kind`` field gives, or what is wrong with it (one line)."""
    if not isinstance(raw, Mapping):
        return f"'{kind}' must be a mapping"
    allowed = {
        "wait": {"event", "key", "lookback", "timeout", "on_timeout"},
        "approval": {"approvers", "timeout", "on_timeout"},
    }
    unknown = set(raw) - allowed.get(kind, {"seconds", "until"})
    if unknown:
        return f"'{kind}': unknown field(s) {', '.join(sorted(map(str, unknown)))}"
    timeout = raw.get("timeout")
    if timeout is not None and not _seconds(timeout):
        return f"'{kind}.timeout' must be a positive number of seconds, at most {MAX_SECONDS:g}"
    on_timeout = raw.get("on_timeout", "fail")
    if on_timeout not in ON_TIMEOUT:
        return f"'{kind}.on_timeout' must be one of {', '.join(ON_TIMEOUT)}, got {on_timeout!r}"
    if on_timeout != "fail" and timeout is None:
        return f"'{kind}.on_timeout' needs a 'timeout'"
    if kind == "wait":
        return _event_wait(raw, timeout, on_timeout)
    if kind == "approval":
        approvers = raw.get("approvers", 1)
        if isinstance(approvers, bool) or not isinstance(approvers, int) or not 1 <= approvers <= 100:
            return "'approval.approvers' must be a whole number from 1 to 100"
        return Wait("approval", approvers=approvers, timeout=timeout, on_timeout=on_timeout)
    return _sleep(raw)


def _event_wait(raw: Mapping[str, Any], timeout: float | None, on_timeout: str) -> Wait | str:
    event, key, lookback = raw.get("event"), raw.get("key", ""), raw.get("lookback", 0)
    if not isinstance(event, str) or not EVENT_NAME.match(event):
        return f"'wait.event' must be an event name matching {EVENT_NAME.pattern}"
    if not isinstance(key, str) or len(key) > 256:
        return "'wait.key' must be a string of at most 256 characters"
    if lookback and not _seconds(lookback):
        return f"'wait.lookback' must be a positive number of seconds, at most {MAX_SECONDS:g}"
    return Wait("wait", event=event, key=key, lookback=float(lookback or 0), timeout=timeout, on_timeout=on_timeout)


def _sleep(raw: Mapping[str, Any]) -> Wait | str:
    seconds, until = raw.get("seconds"), raw.get("until")
    if (seconds is None) == (until is None):
        return "'sleep' needs exactly one of 'seconds' and 'until'"
    if seconds is not None:
        return Wait("sleep", seconds=float(seconds)) if _seconds(seconds) else "'sleep.seconds' must be positive"
    try:
        moment = datetime.fromisoformat(str(until))
    except ValueError:
        return f"'sleep.until' must be an ISO-8601 time with its zone, got {until!r}"
    if moment.tzinfo is None:
        return f"'sleep.until' must say its time zone (e.g. {until}Z), got {until!r}"
    return Wait("sleep", until=moment.isoformat())


def _seconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= MAX_SECONDS
