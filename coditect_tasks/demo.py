"""The first autonomous workflow, as orchestrator code would write it.

    orchestrator → plan (emit) → review ×N (echo, in parallel) → summarize (echo)

``review ×N → summarize`` is a Celery chord: the summarize call is published by
the worker that finishes the last review, never by a process waiting on results.
Every call is routed through its agent's queue; no human step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from celery import chord, group
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult, GroupResult

from .app import CoditectApp
from .errors import WorkflowError

DEFAULT_ITEMS = ("parse", "lint", "test", "package")
#: Seconds between looks at the chord header while drawing progress.
POLL_SECONDS = 0.02


@dataclass
class Step:
    """One step of the workflow as the orchestrator saw it.

    ``seconds`` runs from the end of the previous step (or the submit) to the
    moment the result backend recorded this step's last call as done.
    """

    name: str
    agent: str
    calls: int
    done: int = 0
    seconds: float = 0.0
    result: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "agent": self.agent,
            "calls": self.calls,
            "seconds": round(self.seconds, 4),
            "result": self.result,
        }


Progress = Callable[[Step], None]


def run_workflow(
    app: CoditectApp,
    items: Sequence[str] = DEFAULT_ITEMS,
    timeout: float = 60.0,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Run plan → review ×N → summarize and return the outcome as JSON data.

    ``on_progress`` is called whenever a step's count of finished calls changes.
    Raises ``WorkflowError`` if a call fails or ``timeout`` seconds pass.
    """
    notify = on_progress or (lambda step: None)
    emit, echo = app.tasks["agents.emit"], app.tasks["agents.echo"]
    plan = Step("plan", "emit", 1)
    review = Step("review", "echo", len(items))
    summarize = Step("summarize", "echo", 1)
    started = time.monotonic()
    deadline = started + timeout
    submitted_at = datetime.now(UTC)

    plan_result = emit.apply_async(kwargs={"params": {"value": list(items)}, "node_id": "plan"})
    planned = _await(plan_result, deadline)
    plan_done = _complete(plan, planned, plan_result.date_done, submitted_at, notify)

    header = group(
        echo.s(params={"item": item}, upstream={"plan": planned}, node_id=f"review[{index}]")
        for index, item in enumerate(planned)
    )
    body = echo.s(params={"task": "summarize the reviews"}, join="review", node_id="summarize")
    final = chord(header)(body)
    reviews: GroupResult = final.parent
    while not reviews.ready():
        done = reviews.completed_count()
        if done != review.done:
            review.done = done
            notify(review)
        _check(deadline, "review")
        time.sleep(POLL_SECONDS)
    if not reviews.successful():
        raise WorkflowError(f"step review failed: {_first_error(reviews)}")
    reviews_done = max(r.date_done for r in reviews.results)
    reviews_done = _complete(review, [r.result for r in reviews.results], reviews_done, plan_done, notify)

    summary = _await(final, deadline)
    _complete(summarize, summary, final.date_done, reviews_done, notify)
    return {
        "status": "succeeded",
        "workflow": f"plan → review ×{len(items)} → summarize",
        "steps": [plan.to_json(), review.to_json(), summarize.to_json()],
        "result": summary,
        "seconds": round(time.monotonic() - started, 4),
    }


def _complete(step: Step, result: Any, done_at: datetime, since: datetime, notify: Progress) -> datetime:
    step.done = step.calls
    step.result = result
    step.seconds = max(0.0, (done_at - since).total_seconds())
    notify(step)
    return done_at


def _await(result: AsyncResult, deadline: float) -> Any:
    """The result of one call; ``WorkflowError`` if it failed or the deadline passed."""
    try:
        return result.get(timeout=max(0.1, deadline - time.monotonic()))
    except CeleryTimeoutError:
        raise WorkflowError(f"timed out waiting for call {result.id}") from None
    except Exception as exc:  # the agent's own exception, re-raised by Celery
        raise WorkflowError(f"call {result.id} failed: {type(exc).__name__}: {exc}") from None


def _check(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise WorkflowError(f"timed out waiting for {what}")


def _first_error(results: GroupResult) -> str:
    for result in results.results:
        if result.failed():
            return repr(result.result)
    return "unknown error"
