"""Versioned agents' ramps: which version of an agent each new run is pinned to.

A ramp sends ``percent`` of new runs to version ``to`` and the rest to ``base`` (None: the
unversioned queue). The choice is drawn from the run id and the agent's name, so it is the same
wherever it is made, and it is made once, at submit: the run's nodes, their retries and the runs
they spawn keep it (the run hash's ``versions``), whatever the ramp does later. A rollback only
changes what new runs get.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .. import keys
from ..agents import NAME_PATTERN, VERSION_PATTERN, versioned
from ..errors import InvalidArgumentError
from ..steps import Ask, Steps

#: Seconds a client keeps the ramps it read: a ramp changed elsewhere reaches its submits this late
#: (the client that changed it sees the change at once).
RAMPS_TTL_SECONDS = 1.0


@dataclass(frozen=True)
class Ramp:
    """Agent ``agent``'s new runs: ``percent`` to version ``to``, the rest to ``base``."""

    agent: str
    base: str | None = None
    to: str | None = None
    percent: float = 0.0

    def pick(self, run_id: str) -> str:
        """The version (``""``: unversioned) run ``run_id`` is pinned to."""
        if self.to is not None and _share(run_id, self.agent) < self.percent / 100:
            return self.to
        return self.base or ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _share(run_id: str, agent: str) -> float:
    """A number in [0, 1) drawn from the run and the agent: the same everywhere, even across agents.
    A run id's random digits draw it (``keys.RUN_ID_DIGITS``): the pins are drawn before the cell is
    chosen, which may depend on them (a pinned version's limits)."""
    digest = hashlib.sha256(f"{run_id[: keys.RUN_ID_DIGITS]}|{agent}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def changed(current: Ramp | None, agent: str, to: str, percent: float, base: str | None) -> Ramp:
    """``current`` ramped to version ``to`` at ``percent``. A ramp that reached 100 % makes its
    version the base of the next one; another version is refused while one ramps part way."""
    if not NAME_PATTERN.match(agent):
        raise InvalidArgumentError(f"agent name {agent!r} must match {NAME_PATTERN.pattern}")
    for version in (to, base):
        if version is not None and not VERSION_PATTERN.match(version):
            raise InvalidArgumentError(f"version {version!r} must match {VERSION_PATTERN.pattern}")
    if not 0 <= percent <= 100:
        raise InvalidArgumentError(f"percent must be from 0 to 100, not {percent:g}")
    if current is not None and current.to not in (None, to):
        if current.percent < 100:
            raise InvalidArgumentError(
                f"agent {agent!r} is ramping to version {current.to} ({current.percent:g} %): "
                "take it to 100 % or roll it back first"
            )
        current = Ramp(agent, base=current.to)  # the finished ramp's version is the base now
    start = base if base is not None else (current.base if current else None)
    if start == to:
        raise InvalidArgumentError(f"agent {agent!r}: version {to} is the base already")
    return Ramp(agent, start, to, percent)


class RampBook:
    """The ramps one client reads (cached ``RAMPS_TTL_SECONDS``) and changes."""

    def __init__(self) -> None:
        self._ramps: dict[str, Ramp] = {}
        self._read = -RAMPS_TTL_SECONDS

    def all(self, fresh: bool = False) -> Steps[dict[str, Ramp]]:
        if fresh or time.monotonic() - self._read > RAMPS_TTL_SECONDS:
            raw = yield Ask(lambda t: t.redis.hgetall(keys.RAMPS))
            self._ramps = {str(agent): Ramp(**json.loads(body)) for agent, body in raw.items()}
            self._read = time.monotonic()
        return self._ramps

    def pins(self, run_id: str, inherited: Mapping[str, str] | None) -> Steps[dict[str, str]]:
        """Agent → version (``""``: unversioned) of run ``run_id``: exactly the ``inherited`` pins of
        a spawning or retried run (an agent it has none for had no ramp when its tree began: it
        stays unversioned), else one drawn for every agent with a ramp now, called or not (a run it
        spawns may call one it does not)."""
        if inherited is not None:
            return dict(inherited)
        return {agent: ramp.pick(run_id) for agent, ramp in (yield from self.all()).items()}

    def ramp(self, agent: str, to: str, percent: float, base: str | None = None) -> Steps[dict[str, Any]]:
        """Send ``percent`` of ``agent``'s new runs to version ``to``; the ramp now."""
        current = (yield from self.all(fresh=True)).get(agent)
        ramp = changed(current, agent, to, percent, base)
        yield Ask(lambda t: t.redis.hset(keys.RAMPS, agent, json.dumps(ramp.to_json())))
        self._read = -RAMPS_TTL_SECONDS
        return ramp.to_json()

    def rollback(self, agent: str) -> Steps[dict[str, Any]]:
        """New runs of ``agent`` on its base version again; runs already pinned keep their version."""
        current = (yield from self.all(fresh=True)).get(agent)
        if current is None or current.to is None:
            raise InvalidArgumentError(f"agent {agent!r} has no ramp to roll back")
        ramp = Ramp(agent, current.base)
        if ramp.base is None:  # the unversioned queue again: as if there had never been a ramp
            yield Ask(lambda t: t.redis.hdel(keys.RAMPS, agent))
        else:
            yield Ask(lambda t: t.redis.hset(keys.RAMPS, agent, json.dumps(ramp.to_json())))
        self._read = -RAMPS_TTL_SECONDS
        return ramp.to_json()


def routes(pins: Mapping[str, str]) -> dict[str, str]:
    """Agent → the key its nodes are routed to (``coder@2``) under ``pins``."""
    return {agent: versioned(agent, version or None) for agent, version in pins.items()}
