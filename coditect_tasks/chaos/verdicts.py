"""The objectives a fault is judged against, and the judging.

The defaults come from the project's measured figures: a lost worker's node runs again within a
lease (5 s) and a reap (1 s) of its loss; a probe run takes a few seconds; no accepted run is lost
and no node succeeds twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .faults import Outcome


@dataclass(frozen=True)
class Objectives:
    """Each a flag of ``coditect-tasks chaos``."""

    #: Seconds from a fault to its work going on (a node begun again, the next transition) at most.
    failover: float = 10.0
    #: Seconds a probe run takes under a fault, submit to end, at most.
    latency: float = 30.0
    #: Runs that may end other than succeeded.
    lost: int = 0
    #: Nodes that may succeed twice (their effect applied twice).
    duplicates: int = 0

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def judge(outcome: Outcome, objectives: Objectives) -> Outcome:
    """``outcome`` with a problem for each objective it missed (and those its fault found itself)."""
    if outcome.skipped:
        return outcome
    figures = outcome.figures
    if figures.get("lost", 0) > objectives.lost:
        outcome.problems.append(f"{figures['lost']} probe run(s) lost (objective: at most {objectives.lost})")
    if figures.get("duplicates", 0) > objectives.duplicates:
        outcome.problems.append(
            f"{figures['duplicates']} node(s) succeeded twice (objective: at most {objectives.duplicates})"
        )
    failover = figures.get("failover_seconds")
    if failover is not None and failover > objectives.failover:
        outcome.problems.append(f"failover took {failover:g} s (objective: {objectives.failover:g} s)")
    if "failover_seconds" in figures and failover is None and figures.get("lost", 0) == 0:
        outcome.problems.append("no work went on after the fault")
    if figures.get("run_seconds", 0) > objectives.latency:
        outcome.problems.append(
            f"the probe run took {figures['run_seconds']:g} s (objective: {objectives.latency:g} s)"
        )
    return outcome
