"""``client.schedules``: the schedule operations of a sync or asyncio client (``schedules.book``).

Both facades only drive the book's steps on their client's transport; they take what a caller
has at hand (a ``Dag``, an interval as seconds or as ``"2s"``, ISO times) and build the
``Schedule`` the book stores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..dag.spec import Dag
from ..schedules.book import ScheduleBook
from ..schedules.spec import Schedule, parse_duration, parse_time

if TYPE_CHECKING:
    from .aio import AsyncClient, AsyncRun
    from .sync import Client, DagRun


def schedule_of(
    name: str,
    dag: Dag,
    cron: str | None,
    every: float | str | None,
    tz: str,
    overlap: str,
    catchup: float,
    jitter: float,
    params: dict[str, Any] | None,
) -> Schedule:
    """The ``Schedule`` those arguments describe (``ScheduleError`` for one that cannot fire)."""
    seconds = parse_duration(every, "every") if isinstance(every, str) else every
    return Schedule(name, dag.to_json(), cron, seconds, tz, overlap, catchup, jitter, dict(params or {}))


class Schedules:
    """``Client.schedules``: runs of a DAG at cron or interval fire times, fired by every
    ``coditect-tasks scheduler`` (``up`` starts one): each fire time makes exactly one run."""

    def __init__(self, client: Client, handle: Callable[[str], DagRun]) -> None:
        self.client = client
        self.handle = handle
        self.book: ScheduleBook = client.core.schedules

    def add(
        self,
        name: str,
        dag: Dag,
        *,
        cron: str | None = None,
        every: float | str | None = None,
        tz: str = "UTC",
        overlap: str = "skip",
        catchup: float = 60.0,
        jitter: float = 0.0,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Start ``dag`` at every fire time of ``cron`` (in zone ``tz``) or ``every`` (seconds, or
        ``"2s"``, ``"5m"``). ``overlap``: what a fire does while the previous run runs (skip,
        buffer-one, allow, cancel-other); ``catchup``: seconds a fire missed while no scheduler ran
        is still made up; ``jitter``: seconds a fire's run may be spread over; ``params`` go over
        every node's. The schedule as listed."""
        schedule = schedule_of(name, dag, cron, every, tz, overlap, catchup, jitter, params)
        return self.client._drive(self.book.add(schedule))

    def all(self) -> list[dict[str, Any]]:
        """Every schedule with its next fire time and latest run (``schedule list --json``)."""
        return self.client._drive(self.book.all())

    def get(self, name: str) -> dict[str, Any]:
        return self.client._drive(self.book.get(name))

    def pause(self, name: str) -> dict[str, Any]:
        """No fire until ``resume``; fire times in between are not made up."""
        return self.client._drive(self.book.pause(name))

    def resume(self, name: str) -> dict[str, Any]:
        return self.client._drive(self.book.resume(name))

    def delete(self, name: str) -> bool:
        """Forget it (its runs stay); False if there was none."""
        return self.client._drive(self.book.delete(name))

    def trigger(self, name: str) -> DagRun:
        """A run now, whatever the overlap policy."""
        return self.handle(self.client._drive(self.book.trigger(name)))

    def backfill(self, name: str, start: str, end: str) -> list[dict[str, str]]:
        """A run for each fire time from ``start`` to ``end`` (ISO-8601; a fire time that had a
        run keeps it): ``{fire_time, run_id}``, oldest first."""
        span = self.book.backfill(name, parse_time(start, "--from"), parse_time(end, "--to"))
        return [{"fire_time": fire, "run_id": run} for fire, run in self.client._drive(span)]

    def fire_due(self, name: str, at: int) -> str | None:
        """Fire ``name`` if it is due at ``at`` (ms since the epoch): what a scheduler does."""
        return self.client._drive(self.book.due(name, at))

    def release(self, name: str) -> str | None:
        """Start the fire ``buffer-one`` held back, once the previous run ended."""
        return self.client._drive(self.book.release(name))


class AsyncSchedules:
    """``AsyncClient.schedules``: ``Schedules``, awaited."""

    def __init__(self, client: AsyncClient, handle: Callable[[str], AsyncRun]) -> None:
        self.client = client
        self.handle = handle
        self.book: ScheduleBook = client.core.schedules

    async def add(
        self,
        name: str,
        dag: Dag,
        *,
        cron: str | None = None,
        every: float | str | None = None,
        tz: str = "UTC",
        overlap: str = "skip",
        catchup: float = 60.0,
        jitter: float = 0.0,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        schedule = schedule_of(name, dag, cron, every, tz, overlap, catchup, jitter, params)
        return await self.client._drive(self.book.add(schedule))

    async def all(self) -> list[dict[str, Any]]:
        return await self.client._drive(self.book.all())

    async def get(self, name: str) -> dict[str, Any]:
        return await self.client._drive(self.book.get(name))

    async def pause(self, name: str) -> dict[str, Any]:
        return await self.client._drive(self.book.pause(name))

    async def resume(self, name: str) -> dict[str, Any]:
        return await self.client._drive(self.book.resume(name))

    async def delete(self, name: str) -> bool:
        return await self.client._drive(self.book.delete(name))

    async def trigger(self, name: str) -> AsyncRun:
        return self.handle(await self.client._drive(self.book.trigger(name)))

    async def backfill(self, name: str, start: str, end: str) -> list[dict[str, str]]:
        span = self.book.backfill(name, parse_time(start, "--from"), parse_time(end, "--to"))
        return [{"fire_time": fire, "run_id": run} for fire, run in await self.client._drive(span)]
