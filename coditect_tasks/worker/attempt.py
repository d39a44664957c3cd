"""``Attempt``: one attempt at a node, the only thing that may change that node's run state.

A plain node's attempt and each foreach item of it go through the same value: its
ids, its fencing token, the retry policy resolved for the node (node fields over
agent defaults) and its lease. Every change it makes carries its own token, so a
stale attempt (its lease expired and the node runs elsewhere) changes nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .. import keys
from ..agents import Agent
from ..engine.taken import Next, TakeNext
from ..engine.transitions import Engine
from ..errors import ChildRunFailedError
from ..resilience.lease import LeaseKeeper
from ..resilience.retry import RetryPolicy


def policy_for(spec: Agent, retries: int | None) -> RetryPolicy:
    """The agent's retry policy, with the node's ``retries`` (when set) in place of its count."""
    if retries is None:
        return spec.retry
    return dataclasses.replace(spec.retry, max_attempts=int(retries) + 1)


@dataclass(frozen=True)
class Attempt:
    """Attempt ``token`` of node ``node_id`` (or foreach item ``<node>#k``) of run ``run_id``.

    ``number`` counts the tries under the retry policy (1 for the first; a failover after a lost
    worker is not a try).
    """

    engine: Engine
    run_id: str
    node_id: str
    token: int
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    number: int = 1

    def lease(self) -> LeaseKeeper:
        """Renew the lease in the background while the ``with`` block runs."""
        return LeaseKeeper(self.renew, keys.LEASE_SECONDS)

    def renew(self, seconds: float) -> bool:
        return self.engine.renew(self.run_id, self.node_id, self.token, seconds)

    def succeed(self, result: Any, span: str = "", take_next: TakeNext | None = None) -> tuple[bool, Next | None]:
        """Record ``result`` (or fail the node if it is not JSON or too large); ``span`` is
        the attempt's traceparent, under which its successors' spans hang. With ``take_next``, the
        next node taken from the queue comes back too."""
        return self.engine.succeed(self.run_id, self.node_id, self.token, result, span, take_next)

    def fail(self, error: str) -> bool:
        return self.engine.fail(self.run_id, self.node_id, self.token, error)

    def retry(self, error: str, countdown: float) -> bool:
        """Whether a retry may go ahead: the engine queues the next attempt's message after
        ``countdown`` seconds (fenced: a stale attempt's retry changes nothing)."""
        return self.engine.retry(self.run_id, self.node_id, self.token, error, countdown)

    def fan_out(self, record: dict[str, Any], items: list[Any]) -> bool:
        """Queue one message per item of this foreach node (see ``execution``)."""
        return self.engine.fan_out(self.run_id, self.node_id, self.token, record, items)

    def spawn(self, children: list[dict[str, Any]], one: bool, bounds: tuple[int, int]) -> bool:
        """End this attempt by starting ``children`` and waiting for them (``dag.spawn``); should one
        fail, the node is retried as the policy says of a failure now."""
        retry = self.policy.delay(self.number) if self.policy.should_retry(self.number, ChildRunFailedError()) else -1
        return self.engine.spawn(self.run_id, self.node_id, self.token, children, one, retry, bounds)

    def reroute(self, agent: str, template: str) -> bool:
        """Queue the node again for ``agent`` (its fallback, while its own breaker is open)."""
        return self.engine.reroute(self.run_id, self.node_id, self.token, agent, template)
