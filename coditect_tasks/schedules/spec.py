"""A schedule: when it fires (a cron expression in a time zone, or every interval), what each fire
starts, and how a fire meets the schedule's previous run. Pure: no I/O.

Fire times are whole milliseconds since the epoch, so every scheduler computes the same ones and
the idempotency key of schedule and fire time makes one run of each, whoever submits it. Cron
arithmetic (time zones, daylight-saving changes) is cronsim's, the library healthchecks.io
maintains: a time a spring change skips fires once at the change, as Debian's cron does.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..dag.spec import Dag
from ..errors import DagError, ScheduleError

#: What a fire does while the schedule's previous run still runs: start nothing, hold one fire
#: until it ends, start anyway, or cancel it and start.
OVERLAPS = ("skip", "buffer-one", "allow", "cancel-other")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: Fire times one backfill may start at most.
MAX_BACKFILL = 1000
#: Shortest ``--every``: a scheduler's loop wakes for each fire, and a run a second is plenty.
MIN_INTERVAL = 1.0
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds in ``2s``, ``5m``, ``1h``, ``1.5d`` or ``500ms``; ``ScheduleError`` otherwise."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ScheduleError(f"{what} {text!r}: write a number and a unit, as 2s, 5m, 1h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def iso(ms: int) -> str:
    """A fire time as the runs and listings show it (UTC, milliseconds)."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def parse_time(text: str, what: str) -> int:
    """An ISO-8601 time (UTC unless it says otherwise) as ms since the epoch."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ScheduleError(f"{what} {text!r} is not an ISO-8601 time (2026-03-29T02:00:00+01:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Schedule:
    """One schedule, as stored in Redis (``keys.SCHEDULES``) and given to ``schedule add``.

    Exactly one of ``cron`` (five fields, in ``tz``) and ``every`` (seconds) says when it fires.
    ``catchup``: seconds a fire may be late (schedulers down) and still run, once; ``jitter``: a
    fire's run starts up to that many seconds after its time, the same delay on every scheduler.
    ``params`` go into the params of every node that calls an agent or waits for an event, over the
    DAG file's own.
    """

    name: str
    dag: dict[str, Any]
    cron: str | None = None
    every: float | None = None
    tz: str = "UTC"
    overlap: str = "skip"
    catchup: float = 60.0
    jitter: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    paused: bool = False
    #: When it was added (ms): part of each fire's idempotency key, so a schedule added again under
    #: the same name never meets the keys of the one it replaced.
    created: int = 0

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ScheduleError(f"schedule name {self.name!r} must match {NAME_PATTERN.pattern}")
        if (self.cron is None) == (self.every is None):
            raise ScheduleError(f"schedule {self.name!r}: give either a cron expression or an interval (every)")
        if self.overlap not in OVERLAPS:
            raise ScheduleError(f"schedule {self.name!r}: overlap {self.overlap!r} is not one of {', '.join(OVERLAPS)}")
        if self.every is not None and not self.every >= MIN_INTERVAL:
            raise ScheduleError(f"schedule {self.name!r}: the interval must be at least {MIN_INTERVAL:g} s")
        if not all(math.isfinite(v) for v in (self.catchup, self.jitter, self.every or 0.0)):
            raise ScheduleError(f"schedule {self.name!r}: catchup, jitter and every must be finite numbers")
        if self.catchup < 0 or self.jitter < 0:
            raise ScheduleError(f"schedule {self.name!r}: catchup and jitter must not be negative")
        if not isinstance(self.params, dict):
            raise ScheduleError(f"schedule {self.name!r}: params must be a JSON object")
        try:
            self.zone()
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"schedule {self.name!r}: unknown time zone {self.tz!r} (as Europe/Berlin)") from None
        if self.cron is not None:
            if len(self.cron.split()) != 5:
                raise ScheduleError(
                    f"schedule {self.name!r}: cron {self.cron!r}: five fields (minute hour day month weekday)"
                )
            try:
                CronSim(self.cron, datetime.now(self.zone()))
            except CronSimError as exc:
                raise ScheduleError(f"schedule {self.name!r}: cron {self.cron!r}: {exc}") from None
        if self.jitter * 1000 >= self.shortest_gap():  # a delayed fire would make the next one late
            raise ScheduleError(f"schedule {self.name!r}: jitter must be shorter than the time between fires")
        try:
            self.run_dag()
        except DagError as exc:
            raise ScheduleError(f"schedule {self.name!r}: {exc}") from None

    def shortest_gap(self) -> int:
        """Milliseconds between two fire times at least (of a cron: over its next 100)."""
        if self.every is not None:
            return round(self.every * 1000)
        fires = self.fires(round(time.time() * 1000), 2**62, limit=100)
        return min(b - a for a, b in itertools.pairwise(fires))

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def when(self) -> str:
        """How it fires, as a listing shows it."""
        if self.cron is not None:
            return f"cron {self.cron} ({self.tz})"
        assert self.every is not None
        return f"every {self.every:g}s"

    def next_after(self, ms: int) -> int:
        """Its first fire time strictly after ``ms``. An interval's fire times are its multiples
        since the epoch, so every scheduler agrees on them without a shared start."""
        if self.every is not None:
            step = round(self.every * 1000)
            return (ms // step + 1) * step
        assert self.cron is not None
        moment = datetime.fromtimestamp(ms / 1000, self.zone())
        for found in CronSim(self.cron, moment):  # in an hour the autumn change repeats, cronsim may
            at = round(found.timestamp() * 1000)  # give the first pass of a time the input is past
            if at > ms:
                return at
        raise AssertionError("unreachable: a cron's fire times never end")

    def fires(self, start: int, end: int, limit: int | None = None) -> list[int]:
        """Its fire times from ``start`` (included) to ``end`` (excluded), at most ``MAX_BACKFILL``
        (``ScheduleError`` beyond: ask for a shorter span); the first ``limit`` only, if given."""
        found: list[int] = []
        at = self.next_after(start - 1)
        while at < end and len(found) != limit:
            if len(found) == MAX_BACKFILL:
                raise ScheduleError(f"schedule {self.name!r}: over {MAX_BACKFILL} fire times in that span")
            found.append(at)
            at = self.next_after(at)
        return found

    def delay(self, fire: int) -> int:
        """The fire's jitter (ms): drawn from the schedule and the fire time, so every scheduler
        waits the same."""
        if not self.jitter:
            return 0
        digest = hashlib.sha256(f"{self.name}|{fire}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % math.ceil(self.jitter * 1000)

    def idempotency_key(self, fire: int) -> str:
        return f"schedule:{self.name}:{self.created}:{fire}"

    def run_dag(self) -> Dag:
        """The DAG each fire starts: the stored one, with ``params`` over every node's own."""
        data = dict(self.dag)
        if self.params:
            data["nodes"] = [
                {**node, "params": {**node.get("params", {}), **self.params}}
                if "agent" in node or "wait" in node
                else node
                for node in data["nodes"]
            ]
        return Dag.from_json(data, source=f"schedule {self.name}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schedule:
        """A stored schedule; fields a later release added are left out (a rolling upgrade)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
