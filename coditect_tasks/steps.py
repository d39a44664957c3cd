"""Steps: what an operation needs done, yielded to a transport that does it (sans-I/O).

An operation (``client.core``, ``registry``) is a generator: it yields a step, is sent the reply
(or has the step's error thrown into it), and returns its result. A sync transport performs a
step by calling it; an asyncio transport awaits what the call returns and runs ``Block`` calls
in a thread. redis-py's sync and asyncio clients name their commands alike, so one ``Ask``
serves both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Ask:
    """One request to the state Redis: ``call(transport)`` uses the transport's ``redis`` and
    ``scripts``; it returns the reply, or (asyncio) an awaitable of it."""

    call: Callable[[Any], Any]


def ask(call: Callable[[Any], Any]) -> Generator[Step, Any, Any]:
    """One ``Ask`` as an operation of its own (what ``Outlast`` repeats)."""
    return (yield Ask(call))


@dataclass(frozen=True)
class Block:
    """A call with no asyncio API (the history database, Celery's control, the broker's queue
    depths): run in a thread on an event loop."""

    call: Callable[[], Any]


@dataclass(frozen=True)
class Outlast:
    """Run ``steps(number)`` (number: 0 for the first try), again on a transient Redis error, for
    up to ``seconds`` with backoff: a try must be safe to repeat, which ``number`` lets it check."""

    steps: Callable[[int], Steps[Any]]
    seconds: float


@dataclass(frozen=True)
class Listen:
    """Be told when run ``run_id`` announces its end (a subscription made before the state is
    read, so no announcement slips by); replies a ticket for ``Pause``."""

    run_id: str
    seconds: float


@dataclass(frozen=True)
class Pause:
    """Until the run of ``ticket`` announces its end, or ``seconds`` pass."""

    ticket: Any
    seconds: float


@dataclass(frozen=True)
class Subscribe:
    """Subscribe to ``channel`` and return once Redis confirms it; replies the subscription."""

    channel: str


@dataclass(frozen=True)
class Receive:
    """The next message of ``subscription`` (redis-py's dict), or None after ``seconds``."""

    subscription: Any
    seconds: float


Step = Ask | Block | Outlast | Listen | Pause | Subscribe | Receive
STEPS = (Ask, Block, Outlast, Listen, Pause, Subscribe, Receive)
Steps = Generator[Step, Any, T]


def advance(steps: Generator[Any, Any, Any], reply: Any, error: BaseException | None) -> tuple[bool, Any]:
    """Send ``reply`` into ``steps`` (or throw ``error``): (True, what they yield next) or (False,
    what they return)."""
    try:
        return True, (steps.throw(error) if error is not None else steps.send(reply))
    except StopIteration as stop:
        return False, stop.value


#: What a transport is handed with each step: the cleanups to run once the operation ends (a
#: subscription to close, a wait to forget), for the step to add its own to.
Cleanups = list[Callable[[], Any]]


def iterate(steps: Generator[Any, Any, Any], perform: Callable[[Step, Cleanups], Any]) -> Generator[Any, None, Any]:
    """Run an operation on a sync transport, ``perform`` doing each step: gives out what else the
    operation yields (a run's events) and returns what it returns. An error of a step is thrown
    back into the operation, which may handle it."""
    cleanups: Cleanups = []
    reply: Any = None
    error: BaseException | None = None
    try:
        while True:
            going, item = advance(steps, reply, error)
            if not going:
                return item
            reply, error = None, None
            if not isinstance(item, STEPS):
                yield item
                continue
            try:
                reply = perform(item, cleanups)
            except Exception as exc:
                error = exc
    finally:
        steps.close()
        for cleanup in reversed(cleanups):
            with contextlib.suppress(Exception):
                cleanup()


def drive(steps: Steps[T], perform: Callable[[Step, Cleanups], Any]) -> T:
    """Run an operation that yields only steps to its end on a sync transport; what it returns."""
    it = iterate(steps, perform)
    while True:
        try:
            next(it)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]  # the operation's result
        raise AssertionError("an operation that returns a value yielded something other than a step")
