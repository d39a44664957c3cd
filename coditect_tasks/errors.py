"""The one error tree of coditect-tasks.

Every error a user can cause or meet is a ``CoditectError``; the CLI prints its
message as one line and exits with its ``exit_code``. Exceptions carry the data a
caller needs, not just a message.

    CoditectError
    ├── ConfigError                 bad CODITECT_* variable or option (exit 2)
    │   ├── NoBrokerError           nothing configured and no embedded stack running
    │   └── EvictingRedisError      a Redis whose maxmemory-policy may evict run state
    ├── InvalidArgumentError        an argument out of its range (also a ValueError) (exit 2)
    │   └── ScheduleError           a schedule that cannot fire: its cron, zone, duration or name
    ├── ScheduleNotFoundError       no schedule of that name (exit 2)
    ├── UnknownAgentError           an agent name nobody declared (exit 2)
    ├── AgentDeclarationError       an @agent declaration that cannot work (exit 2)
    ├── BrokerUnreachableError      the broker or state Redis does not answer (exit 3)
    ├── EmbeddedStackError          the local Redis or workers failed to start (exit 3)
    ├── WorkflowError               a workflow did not succeed (exit 1)
    │   ├── RunFailedError          a run's result asked for: it failed or was cancelled (``failed`` nodes)
    │   └── ChildRunFailedError     a run a node spawned failed or was cancelled (what its retry policy sees)
    ├── RunTimeoutError             a run did not end within the time a caller waited (also a TimeoutError)
    ├── InvalidIdempotencyKeyError  not a string of 1 to 256 characters (exit 2)
    ├── IdempotencyConflictError    a key an earlier run holds, given with another DAG (exit 2)
    ├── DagError                    a DAG file or object that cannot run (exit 2)
    │   ├── MalformedDagError       unreadable YAML/JSON or wrong field types
    │   ├── CycleError              ``cycle`` lists the nodes of one cycle, in order
    │   ├── DagTooLargeError        over a configured size limit (nodes, document bytes)
    │   └── PlacementError          a spawned child holds a limit, in a tree outside cell 0
    ├── ReplicationError            a submit too few Redis replicas acknowledged in time (exit 3)
    ├── UpgradeRefusedError         ``upgrade-keys`` found it unsafe to rename (and renamed nothing)
    ├── StreamLimitError            a node's attempt streamed more chunks than CODITECT_STREAM_MAX_CHUNKS
    ├── RunNotFoundError            no live state and no history for a run id (exit 2)
    ├── RunStateError               the run's state does not allow that (retry a running run) (exit 1)
    ├── LockTimeoutError            a lock still held by another after the wait
    ├── StaleFenceError             a write carrying an older fencing token than one already seen
    └── LoadReportError             a load test ended without Locust's statistics (exit 1)
"""

from __future__ import annotations

from collections.abc import Iterable


class CoditectError(Exception):
    """Root of every error raised on purpose by coditect-tasks."""

    exit_code = 1


class ConfigError(CoditectError):
    """A setting or option is malformed; ``source`` names where it came from."""

    exit_code = 2

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class NoBrokerError(ConfigError):
    """No broker is configured and no embedded stack runs under CODITECT_HOME."""

    def __init__(self, home: str) -> None:
        super().__init__(
            "CODITECT_BROKER_URL",
            f"not set and no embedded stack is running under {home}; "
            "start one with `coditect-tasks up` or set CODITECT_BROKER_URL",
        )


class EvictingRedisError(ConfigError):
    """A Redis that may evict keys under memory pressure: run state or messages would vanish."""

    def __init__(self, url: str, policy: str) -> None:
        self.url = url
        self.policy = policy
        super().__init__(
            "maxmemory-policy",
            f"{url} evicts keys ({policy!r}); coditect-tasks needs 'noeviction' so that no running work is lost",
        )


class InvalidArgumentError(CoditectError, ValueError):
    """A call's argument out of its range (a lock name, a limit, a status filter); also a
    ``ValueError``, as Python's own calls raise for one."""

    exit_code = 2


class ScheduleError(InvalidArgumentError):
    """A schedule that cannot fire as given (its cron expression, time zone, interval, overlap
    policy or name), or one that exists already."""


class ScheduleNotFoundError(CoditectError):
    """No schedule of that name."""

    exit_code = 2

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no schedule named {name!r} (coditect-tasks schedule list)")


class UnknownAgentError(CoditectError):
    """An agent name that no loaded agent module declares."""

    exit_code = 2

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown agent {name!r} (known: {', '.join(self.known) or 'none'})")


class AgentDeclarationError(CoditectError):
    """An ``@agent`` declaration or agent module that cannot be used."""

    exit_code = 2


class BrokerUnreachableError(CoditectError):
    """A broker or Redis URL did not answer within the connect timeout."""

    exit_code = 3

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach {url}: {reason}")


class EmbeddedStackError(CoditectError):
    """The embedded Redis or a local worker process failed to start."""

    exit_code = 3


class WorkflowError(CoditectError):
    """A workflow ended in a state other than succeeded."""

    exit_code = 1


class RunFailedError(WorkflowError):
    """Run ``run_id`` ended ``state`` (failed or cancelled); ``failed``: node → its error."""

    def __init__(self, run_id: str, state: str, failed: dict[str, str | None]) -> None:
        self.run_id = run_id
        self.state = state
        self.failed = failed
        nodes = ", ".join(f"{node} ({error})" if error else node for node, error in failed.items())
        super().__init__(f"run {run_id} {state}" + (f": {nodes}" if nodes else ""))


class ChildRunFailedError(WorkflowError):
    """A run a node spawned failed or was cancelled: the node fails with it. An agent's retry
    policy lists this class in ``retry_on`` (or lets every error be retried) to spawn anew then."""


class RunTimeoutError(CoditectError, TimeoutError):
    """Run ``run_id`` was still ``state`` when the caller stopped waiting."""

    def __init__(self, run_id: str, state: str, seconds: float) -> None:
        self.run_id = run_id
        self.state = state
        super().__init__(f"run {run_id} still {state} after {seconds:g} s")


class InvalidIdempotencyKeyError(CoditectError):
    """An idempotency key that is not a string of 1 to 256 characters: nothing is submitted."""

    exit_code = 2

    def __init__(self, problem: str) -> None:
        super().__init__(f"idempotency key {problem}")


class IdempotencyConflictError(CoditectError):
    """Idempotency ``key`` was given to run ``run_id`` with another DAG: a submit of this DAG under
    it would be a different run, which the key exists to prevent."""

    exit_code = 2

    def __init__(self, key: str, run_id: str) -> None:
        self.key = key
        self.run_id = run_id
        super().__init__(f"idempotency key {key!r} already started run {run_id} with a different DAG")


class DagError(CoditectError):
    """A DAG that cannot be run; ``source`` is the file (or ``<dag name>``), ``node`` the culprit."""

    exit_code = 2

    def __init__(self, source: str, problem: str, node: str | None = None) -> None:
        self.source = source
        self.node = node
        self.problem = problem
        where = f"{source}: node {node!r}: " if node is not None else f"{source}: "
        super().__init__(where + problem)


class MalformedDagError(DagError):
    """The file is not YAML/JSON, or a field has the wrong type."""


class CycleError(DagError):
    """The dependencies loop; ``cycle`` is one loop, first node repeated at the end."""

    def __init__(self, source: str, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(source, "dependency cycle " + " -> ".join(cycle))


class DagTooLargeError(DagError):
    """Over a size limit: more nodes than ``CODITECT_MAX_NODES``, a document over ``CODITECT_MAX_DAG_BYTES``."""


class PlacementError(DagError):
    """A child run that holds a limit, spawned by a run outside cell 0 on a Redis Cluster of many
    cells: every run that holds a limit lives in cell 0, with its whole tree, so that the limit holds
    across all of them; the tree was placed when its root was submitted, holding none."""

    def __init__(self, source: str, limits: list[str], cell: int) -> None:
        self.limits = limits
        super().__init__(
            source,
            f"holds limit(s) {', '.join(limits)}, but its tree is in cell {cell}: on a Redis Cluster only the "
            "trees of roots that hold a limit may spawn children that hold one (or set CODITECT_REDIS_CELLS=1)",
        )


class ReplicationError(CoditectError):
    """A submit the Redis primary took but fewer replicas than ``CODITECT_REDIS_MIN_REPLICAS``
    acknowledged in time (the run exists, but a failover now could lose it), or that a failover
    lost (``lost``). Submitting again with the same idempotency key is safe."""

    exit_code = 3

    def __init__(self, run_id: str, acked: int, needed: int, seconds: float, lost: bool = False) -> None:
        self.run_id = run_id
        if lost:
            what = f"run {run_id} was lost in a Redis failover before a replica had it"
        else:
            what = (
                f"run {run_id} is on the Redis primary, but {acked} of the {needed} replica(s) it needs "
                f"(CODITECT_REDIS_MIN_REPLICAS) acknowledged it within {seconds:g} s: a failover now could lose it"
            )
        super().__init__(f"{what}; submit again with the same idempotency key")


class UpgradeRefusedError(CoditectError):
    """``upgrade-keys`` found what makes renaming unsafe (a live worker of the earlier release, or
    keys this release wrote already) and renamed nothing."""


class StreamLimitError(CoditectError):
    """An attempt streamed as many chunks as a node may (``CODITECT_STREAM_MAX_CHUNKS``): the rest
    would grow Redis without bound."""

    def __init__(self, node: str, most: int) -> None:
        self.node = node
        self.most = most
        super().__init__(f"node {node} streamed {most} chunks, the most CODITECT_STREAM_MAX_CHUNKS allows an attempt")


class RunNotFoundError(CoditectError):
    """A run id that neither the live state nor the history knows."""

    exit_code = 2

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run {run_id!r} in the live state or the history")


class RunStateError(CoditectError):
    """An operation the run's current state does not allow (retrying one that succeeded or still runs)."""

    def __init__(self, run_id: str, problem: str) -> None:
        self.run_id = run_id
        self.problem = problem
        super().__init__(f"run {run_id}: {problem}")


class LockTimeoutError(CoditectError):
    """``lock(name, wait=…)`` gave up: another holder kept the lock for the whole wait."""

    def __init__(self, name: str, wait: float) -> None:
        self.name = name
        self.wait = wait
        super().__init__(f"lock {name!r} still held by another after {wait:g} s")


class StaleFenceError(CoditectError):
    """A write whose fencing token is older than one that already wrote there: its holder's lease
    ran out (a pause, a partition) and someone else holds the lock now, so the write is refused."""

    def __init__(self, target: str, token: int | None, newest: int) -> None:
        self.target = target
        self.token = token
        self.newest = newest
        given = "no fencing token" if token is None else f"fencing token {token}"
        super().__init__(f"{target}: refused a write with {given}; token {newest} has written there since")


class LoadReportError(CoditectError):
    """Locust wrote no statistics: it failed before the test began (its log says why)."""
