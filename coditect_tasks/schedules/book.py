"""Schedules in Redis: adding, listing, pausing and deleting them, and firing them, as steps (no
I/O) that the sync and asyncio clients and the scheduler process drive alike.

Any number of schedulers fire the same schedules. Each fire's run is submitted with the
idempotency key of schedule and fire time, so however many schedulers reach it, it makes one
run; schedule.lua then moves the schedule on compare-and-set, so one of them does.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any

from .. import keys
from ..errors import DagError, IdempotencyConflictError, ScheduleError, ScheduleNotFoundError, UnknownAgentError
from ..status import TERMINAL, public
from ..steps import Ask, Steps
from .spec import Schedule, iso

log = logging.getLogger(__name__)

#: Milliseconds a fire may be late and still count as on time, whatever its catch-up window: the
#: schedulers' own delay (a busy machine, a failover of Redis), not downtime.
ON_TIME_MS = 1000


def now_ms() -> int:
    return int(time.time() * 1000)


class ScheduleBook:
    """The schedule operations of one client (``core``: its submit and cancel)."""

    def __init__(self, core: Any) -> None:
        self.core = core

    # --- defining ---

    def add(self, schedule: Schedule) -> Steps[dict[str, Any]]:
        """Store ``schedule`` and arm its first fire time after now; ``ScheduleError`` if one of
        that name exists."""
        stamped = replace(schedule, created=now_ms())
        retention = self.core.settings.idempotency_retention
        if stamped.catchup > retention:  # a fire's key must outlive the time it may still be made up in
            raise ScheduleError(
                f"schedule {schedule.name!r}: catchup {stamped.catchup:g} s exceeds "
                f"CODITECT_IDEMPOTENCY_RETENTION ({retention} s)"
            )
        yield from self.core.submitter.check(stamped.run_dag())
        added = yield Ask(lambda t: t.redis.hsetnx(keys.SCHEDULES, stamped.name, json.dumps(stamped.to_json())))
        if not added:
            raise ScheduleError(f"schedule {schedule.name!r} exists; delete it first")
        yield from self._arm(stamped)
        return (yield from self.get(stamped.name))

    def _arm(self, schedule: Schedule) -> Steps[None]:
        """Point ``schedule`` at its next fire time after now (what add and resume do)."""
        fire = schedule.next_after(now_ms())

        def arm(t: Any) -> Any:
            pipe = t.redis.pipeline(transaction=True)
            pipe.hset(keys.schedule_state(schedule.name), "next", fire)
            if not schedule.paused:
                pipe.zadd(keys.SCHEDULES_DUE, {schedule.name: fire + schedule.delay(fire)})
            return pipe.execute()

        yield Ask(arm)

    def definition(self, name: str) -> Steps[Schedule]:
        raw = yield Ask(lambda t: t.redis.hget(keys.SCHEDULES, name))
        if raw is None:
            raise ScheduleNotFoundError(name)
        return Schedule.from_json(json.loads(raw))

    def get(self, name: str) -> Steps[dict[str, Any]]:
        """One schedule as ``schedule list --json`` shows it."""
        schedule = yield from self.definition(name)
        state = yield Ask(lambda t: t.redis.hgetall(keys.schedule_state(name)))
        return describe(schedule, state)

    def all(self) -> Steps[list[dict[str, Any]]]:
        """Every schedule, by name, with its next fire time and its latest run."""
        raw = yield Ask(lambda t: t.redis.hgetall(keys.SCHEDULES))
        names = sorted(raw)

        def states(t: Any) -> Any:
            pipe = t.redis.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(keys.schedule_state(name))
            return pipe.execute()

        found = (yield Ask(states)) if names else []
        return [
            describe(Schedule.from_json(json.loads(raw[name])), state) for name, state in zip(names, found, strict=True)
        ]

    def pause(self, name: str) -> Steps[dict[str, Any]]:
        """No fire until ``resume``; the fire times in between are not made up."""
        schedule = replace((yield from self.definition(name)), paused=True)

        def pause(t: Any) -> Any:
            pipe = t.redis.pipeline(transaction=True)
            pipe.hset(keys.SCHEDULES, name, json.dumps(schedule.to_json()))
            pipe.zrem(keys.SCHEDULES_DUE, name)
            return pipe.execute()

        yield Ask(pause)
        return (yield from self.get(name))

    def resume(self, name: str) -> Steps[dict[str, Any]]:
        """Fire again, from the first fire time after now."""
        schedule = replace((yield from self.definition(name)), paused=False)
        yield Ask(lambda t: t.redis.hset(keys.SCHEDULES, name, json.dumps(schedule.to_json())))
        yield from self._arm(schedule)
        return (yield from self.get(name))

    def delete(self, name: str) -> Steps[bool]:
        """Forget the schedule (its runs stay); False if there was none."""

        def delete(t: Any) -> Any:
            pipe = t.redis.pipeline(transaction=True)
            pipe.hdel(keys.SCHEDULES, name)
            pipe.delete(keys.schedule_state(name))
            pipe.zrem(keys.SCHEDULES_DUE, name)
            pipe.srem(keys.SCHEDULES_BUFFERED, name)
            return pipe.execute()

        return bool((yield Ask(delete))[0])

    # --- firing ---

    def submit(self, schedule: Schedule, fire: int) -> Steps[str]:
        """The run of ``fire``: started now, or the one a scheduler started for it already."""
        origin = {"schedule": schedule.name, "fire_time": iso(fire)}
        return str(
            (yield from self.core.submitter.submit(schedule.run_dag(), schedule.idempotency_key(fire), origin=origin))
        )

    def trigger(self, name: str) -> Steps[str]:
        """A run now, whatever the overlap policy says (it is asked for); the schedule's latest run
        from then on, as the policy sees it."""
        schedule = yield from self.definition(name)
        fire = now_ms()
        run_id = yield from self.submit(schedule, fire)
        yield Ask(lambda t: t.redis.hset(keys.schedule_state(name), mapping={"last_run": run_id, "last_fire": fire}))
        return run_id

    def backfill(self, name: str, start: int, end: int) -> Steps[list[tuple[str, str]]]:
        """A run for every fire time from ``start`` to ``end`` (ms), oldest first, whatever the
        overlap policy: (fire time, run id). A fire time that has a run already keeps it."""
        if end <= start:
            raise ScheduleError("backfill: --to must be after --from")
        schedule = yield from self.definition(name)
        started = []
        for fire in schedule.fires(start, end):
            started.append((iso(fire), (yield from self.submit(schedule, fire))))
        return started

    def ended(self, run_id: str | None) -> Steps[bool]:
        """Whether the schedule's previous run ``run_id`` has ended (or left Redis: it ended)."""
        if not run_id:
            return True
        status = yield Ask(lambda t: t.redis.hget(keys.run_prefix(run_id) + "run", "status"))
        return status is None or public(str(status)) in TERMINAL

    def due(self, name: str, at: int) -> Steps[str | None]:
        """Fire ``name`` if its next fire time is due at ``at`` (ms); the run it started, if any.
        A fire later than its catch-up window is skipped, with every other one past the window."""
        raw = yield Ask(lambda t: t.redis.hget(keys.SCHEDULES, name))
        if raw is None:
            yield Ask(lambda t: t.redis.zrem(keys.SCHEDULES_DUE, name))
            return None
        schedule = Schedule.from_json(json.loads(raw))
        state = yield Ask(lambda t: t.redis.hgetall(keys.schedule_state(name)))
        if schedule.paused or "next" not in state:  # a pause that raced a resume: out of the due set
            yield Ask(lambda t: t.redis.zrem(keys.SCHEDULES_DUE, name))
            return None
        fire = int(state["next"])
        late = at - fire - schedule.delay(fire)
        if late < 0:
            return None  # another scheduler moved it on
        window = schedule.catchup * 1000 + ON_TIME_MS
        if late > window:  # downtime: go on from the first fire time still within the window
            following = schedule.next_after(max(fire, at - int(window) - 1))
            log.info("schedule %s: skipped fire times from %s (past its catch-up window)", name, iso(fire))
            yield from self._advance(schedule, fire, following)
            return None
        run_id, held = "", ""
        # a fire held back (buffer-one) goes first: until it has started, the schedule is busy
        idle = "buffered" not in state and (yield from self.ended(state.get("last_run")))
        if idle or schedule.overlap == "allow":
            run_id = yield from self._fire(schedule, fire)
        elif schedule.overlap == "cancel-other":
            yield from self.core.cancel(state["last_run"])
            run_id = yield from self._fire(schedule, fire)
        elif schedule.overlap == "buffer-one":
            held = str(fire)
        yield from self._advance(schedule, fire, schedule.next_after(fire), run_id, held)
        return run_id or None

    def _fire(self, schedule: Schedule, fire: int) -> Steps[str]:
        """``submit``, or '' if the DAG cannot run now (an agent no worker serves any more): the
        fire is lost with a warning in the scheduler's log, and the schedule goes on."""
        try:
            return (yield from self.submit(schedule, fire))
        except (DagError, UnknownAgentError, IdempotencyConflictError) as exc:
            log.warning("schedule %s: fire time %s started no run: %s", schedule.name, iso(fire), exc)
            return ""

    def _advance(self, schedule: Schedule, fire: int, following: int, run_id: str = "", held: str = "") -> Steps[bool]:
        due = following + schedule.delay(following)
        args = ["advance", schedule.name, fire, following, due, run_id, fire, held]
        return bool((yield Ask(lambda t: t.scripts["schedule"](args=args))))

    def release(self, name: str) -> Steps[str | None]:
        """Start the fire ``buffer-one`` held back once the previous run has ended; its run."""
        state = yield Ask(lambda t: t.redis.hgetall(keys.schedule_state(name)))
        raw = yield Ask(lambda t: t.redis.hget(keys.SCHEDULES, name))
        if raw is None or "buffered" not in state:
            yield Ask(lambda t: t.redis.srem(keys.SCHEDULES_BUFFERED, name))
            return None
        if json.loads(raw).get("paused") or not (yield from self.ended(state.get("last_run"))):
            return None  # paused: it starts once resumed, when the previous run has ended
        fire = state["buffered"]
        run_id = yield from self.submit(Schedule.from_json(json.loads(raw)), int(fire))
        yield Ask(lambda t: t.scripts["schedule"](args=["unbuffer", name, fire, run_id]))
        return run_id


def describe(schedule: Schedule, state: dict[str, Any]) -> dict[str, Any]:
    """A schedule with its state, as listings show it."""
    fire = int(state["next"]) if "next" in state else None
    return {
        **schedule.to_json(),
        "when": schedule.when,
        "next_fire": None if schedule.paused or fire is None else iso(fire + schedule.delay(fire)),
        "last_run": state.get("last_run"),
        "last_fire": iso(int(state["last_fire"])) if state.get("last_fire") else None,
        "buffered": iso(int(state["buffered"])) if state.get("buffered") else None,
    }
