"""The load plan's scenarios as data: stages of Locust users over time.

Each Locust user submits one DAG run, waits for it to end and, in the paced
scenarios, starts its next run one second after the last one started: ``users``
is then the target rate in runs per second, reached while runs end within a
second. The stress scenario has no pacing: every user resubmits at once, so
``users`` is the number of runs in flight. Pure data and arithmetic, no Locust
import (that would monkey-patch the importing process with gevent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..dag.spec import Dag
from ..errors import ConfigError


@dataclass(frozen=True)
class Stage:
    """Hold ``users`` (started at ``spawn_rate`` per second) until ``until`` seconds into the test."""

    until: float
    users: int
    spawn_rate: float


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    stages: tuple[Stage, ...]
    #: Seconds between the starts of one user's runs; 0 means back to back (a closed loop).
    pacing: float = 1.0
    #: Whether ``--scale`` also shrinks the user count (the stress scenario's size is its users).
    scale_users: bool = False
    #: Runs per second when ``--rate`` set it (``at_rate``), else None.
    rate: float | None = None

    @property
    def seconds(self) -> float:
        return self.stages[-1].until

    def scaled(self, scale: float) -> Scenario:
        """Durations (and, for stress, users) times ``scale``, for short CI runs."""
        if not 0 < scale <= 1:
            raise ConfigError("--scale", f"must be in (0, 1], got {scale:g}")
        stages = tuple(
            Stage(
                round(s.until * scale, 3), max(1, round(s.users * scale)) if self.scale_users else s.users, s.spawn_rate
            )
            for s in self.stages
        )
        return replace(self, stages=stages)

    def at_rate(self, rate: float) -> Scenario:
        """The same scenario with runs arriving at ``rate`` per second: ``ceil(rate)`` users, each
        starting a run every ``users / rate`` seconds. Only for one paced stage (steady, soak)."""
        if self.pacing == 0 or len(self.stages) != 1:
            raise ConfigError("--rate", f"sets the rate of steady and soak; {self.name} sets its own")
        if not 0 < rate <= 10_000:
            raise ConfigError("--rate", f"must be in (0, 10000] runs per second, got {rate:g}")
        users = math.ceil(rate)
        stage = replace(self.stages[0], users=users, spawn_rate=float(users))
        return replace(self, summary=f"{rate:g} runs/s", stages=(stage,), pacing=users / rate, rate=rate)

    def tick(self, elapsed: float) -> tuple[int, float] | None:
        """(users, spawn rate) ``elapsed`` seconds in, or None once the test is over."""
        for stage in self.stages:
            if elapsed < stage.until:
                return stage.users, stage.spawn_rate
        return None


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("steady", "10 runs/s for 10 min", (Stage(600, 10, 10),)),
        Scenario(
            "spike",
            "10 runs/s for 1 min, 100 runs/s for 1 min, 10 runs/s for 1 min",
            (Stage(60, 10, 10), Stage(120, 100, 100), Stage(180, 10, 100)),
        ),
        Scenario(
            "stress",
            "1000 runs in flight at once for 2 min (ramp 10 s)",
            (Stage(120, 1000, 100),),
            pacing=0.0,
            scale_users=True,
        ),
        Scenario("soak", "50 runs/s for 1 h", (Stage(3600, 50, 50),)),
    )
}


def scenario(name: str, scale: float = 1.0, rate: float | None = None) -> Scenario:
    """The named scenario, scaled (and at ``rate`` runs/s if given); a clear error for an unknown name."""
    if name not in SCENARIOS:
        raise ConfigError("SCENARIO", f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    plan = SCENARIOS[name].scaled(scale)
    return plan if rate is None else plan.at_rate(rate)


def default_dag() -> Dag:
    """The DAG every scenario submits unless ``--dag`` names another: a diamond
    (one node fans out to two, which a fourth joins), the smallest shape with both
    a fan-out and a fan-in."""
    dag = Dag("diamond")
    dag.node("plan", "noop")
    dag.node("left", "noop", after=["plan"])
    dag.node("right", "noop", after=["plan"])
    dag.node("join", "echo", after=["left", "right"])
    return dag
