"""The API's documents as pydantic models: they describe ``/openapi.json`` (what clients in other
languages generate code from); handlers return the engine's own dicts, which have this shape."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Error(BaseModel):
    error: str = Field(description="One line: what is wrong and where.")


class NodeSpec(BaseModel):
    id: str
    agent: str | None = Field(default=None, description="The agent it calls; none for a waiting node.")
    wait: dict[str, Any] | None = Field(default=None, description="{event, key, lookback, timeout}: wait for an event.")
    approval: dict[str, Any] | None = Field(default=None, description="{approvers, timeout}: wait for approvals.")
    sleep: dict[str, Any] | None = Field(default=None, description="{seconds} or {until}: wait for a time.")
    params: dict[str, Any] = Field(default_factory=dict)
    after: list[str] = Field(default_factory=list, description="Predecessors: this node starts once they succeed.")
    foreach: str | list[Any] | None = Field(
        default=None, description="Run once per item: a literal list, or the id of an ancestor whose result is a list."
    )
    timeout: float | None = None
    retries: int | None = None
    fallback: str | None = None
    limits: list[str] = Field(
        default_factory=list, description="Limits the node holds while it runs, beside its agent's."
    )


class DagDocument(BaseModel):
    """What ``POST /api/runs`` takes, as JSON or YAML (the same document as a DAG file)."""

    name: str
    nodes: list[NodeSpec]


class NodeState(BaseModel):
    status: str = Field(description="pending, queued, waiting, running, succeeded, failed, skipped or cancelled")
    agent: str | None = Field(
        description="The agent it runs as; none for a waiting node (a wait, an approval, a sleep)."
    )
    attempts: int
    worker: str | None
    started_at: str | None
    finished_at: str | None
    result: Any = None
    error: str | None
    throttled: dict[str, str] | None = Field(
        default=None, description="A queued node held by a full limit: {limit, key} (key '' for an unkeyed limit)."
    )
    awaits: dict[str, str] | None = Field(default=None, description="A waiting node's event: {event, key}.")
    approvals: list[dict[str, Any]] | None = Field(
        default=None, description="An approval node's decisions so far: {by, decision, comment, at}."
    )
    children: list[str] | None = Field(
        default=None, description="The ids of the child runs the node spawned (its agent returned Spawn)."
    )


class RunDocument(BaseModel):
    """A run as ``coditect-tasks dag status --json`` prints it."""

    run_id: str
    name: str | None
    parent_run_id: str | None = Field(description="The run this one retries, or the run that spawned it.")
    parent_node: str | None = Field(default=None, description="The node of parent_run_id that spawned this run.")
    schedule: str | None = Field(default=None, description="The schedule that started this run.")
    fire_time: str | None = Field(default=None, description="The schedule's fire time this run is for (ISO-8601, UTC).")
    versions: dict[str, str] = Field(
        default_factory=dict, description='Agent → the version a ramp pinned this run to ("" unversioned).'
    )
    status: str = Field(description="running, succeeded, failed or cancelled")
    submitted_at: str | None
    finished_at: str | None
    error: str | None
    warnings: list[str]
    nodes: dict[str, NodeState]


class RunSummary(BaseModel):
    run_id: str
    name: str | None
    status: str
    submitted_at: str | None
    finished_at: str | None


class RunList(BaseModel):
    runs: list[RunSummary]
    counts: dict[str, int] = Field(
        description="Recorded runs per status among those the filter passes, whatever their status "
        "(from the history: as fresh as the recorder)."
    )


class AgentRow(BaseModel):
    """An agent as the console shows it."""

    queue: str
    declared: bool = Field(description="Whether the server's agent modules declare it.")
    workers: list[dict[str, Any]] = Field(description="Live worker pools: hostname, pid, concurrency, last_seen.")
    queue_depth: int = Field(description="Messages waiting in its broker queue.")
    breaker: str = Field(description="closed, open or half-open")
    slots: int = Field(description="Processes of its live workers.")
    demand: int = Field(description="Its nodes queued, reserved or running.")
    upcoming: int = Field(description="Its pending nodes whose unfinished predecessors all run now.")


class OverviewAgent(AgentRow):
    oldest_queued: str | None = Field(
        description="When its longest-waiting queued node was put in line (from the history: as fresh as the recorder)."
    )


class Minute(BaseModel):
    minute: str = Field(description="YYYY-MM-DDTHH:MM (UTC)")
    succeeded: int
    failed: int


class LimitRow(BaseModel):
    name: str
    definition: dict[str, Any] | None
    in_use: int = Field(description="Nodes holding it now, over its keys.")
    waiting: int = Field(description="Nodes waiting for it, over its keys.")
    oldest_wait: float = Field(description="Seconds the longest waiter has waited.")


class ScheduleState(BaseModel):
    """One schedule, as ``coditect-tasks schedule list --json`` shows it."""

    name: str
    dag: dict[str, Any] = Field(description="The DAG each fire starts (before params).")
    cron: str | None
    every: float | None = Field(description="Seconds between fire times (multiples of it since the epoch).")
    tz: str
    overlap: str = Field(description="skip, buffer-one, allow or cancel-other: a fire while the previous run runs.")
    catchup: float = Field(description="Seconds a fire missed while no scheduler ran is still made up.")
    jitter: float
    params: dict[str, Any]
    paused: bool
    created: int = Field(description="When it was added (ms since the epoch).")
    when: str = Field(description="How it fires, for people.")
    next_fire: str | None = Field(description="When its next run starts (ISO-8601, jitter in); null while paused.")
    last_run: str | None
    last_fire: str | None
    buffered: str | None = Field(description="The fire time held back until the previous run ends (buffer-one).")


class Overview(BaseModel):
    """The console's home page: what runs where, how fast, and what waits."""

    generated_at: str
    agents: dict[str, OverviewAgent]
    runs: dict[str, int] = Field(description="Recorded runs per status.")
    throughput: dict[str, list[Minute]] = Field(
        description="runs and nodes that ended in each of the last 60 minutes (refreshed every 10 s)."
    )
    waiting: dict[str, int] = Field(description="Waiting nodes per kind: wait, approval, sleep, spawn.")
    recorder: dict[str, int] = Field(description="lag_entries (transitions not yet recorded), unrecorded_runs.")
    outbox: int = Field(description="Node messages waiting for a worker to publish them.")
    limits: list[LimitRow]
    schedules: list[ScheduleState] = Field(description="Every schedule with its next fire time and latest run.")


class AgentNode(BaseModel):
    run_id: str
    node_id: str
    status: str
    attempts: int
    worker: str | None
    started_at: str | None
    finished_at: str | None
    error: str | None


class AgentPage(AgentRow):
    """One agent: its workers, queue and breaker, its fallback, its latest recorded nodes."""

    name: str
    fallback: str | None
    description: str
    nodes: list[AgentNode]


class Agents(BaseModel):
    """As ``coditect-tasks agents --json``: agent name → queue, live workers, queue depth, breaker."""

    agents: dict[str, dict[str, Any]]


class EventSent(BaseModel):
    """An event for the nodes waiting for it (``coditect-tasks event send``)."""

    name: str
    key: str = ""
    data: Any = None


class EventResolved(BaseModel):
    resolved: int = Field(description="Waiting nodes it resolved now.")


class Decision(BaseModel):
    """An approval decision (``coditect-tasks dag approve``)."""

    by: str = Field(
        min_length=1, max_length=128, description="Who decides: distinct names count as distinct approvers."
    )
    reject: bool = False
    comment: str = ""


class DecisionTaken(BaseModel):
    status: str = Field(description="The node's status now: waiting, succeeded or failed.")
    approvals: int
    needed: int


class LimitKey(BaseModel):
    key: str = Field(description="The key parameter's value ('' for an unkeyed limit).")
    in_use: int = Field(description="Nodes holding it now.")
    waiting: int = Field(description="Nodes queued, waiting for it.")
    units: float = Field(description="Units started within the rate window ending now.")
    oldest_wait: float = Field(description="Seconds the oldest waiter has waited.")


class LimitState(BaseModel):
    name: str
    definition: dict[str, Any] = Field(description="concurrency, rate, per, key, units: what the engine enforces.")
    declared: bool = Field(description="Whether code declares it (an agent's limits).")
    changed: dict[str, Any] | bool = Field(description="An operator's change over the declared definition, or false.")
    keys: list[LimitKey]


class Limits(BaseModel):
    """As ``coditect-tasks limits --json``."""

    limits: list[LimitState]


class LimitChange(BaseModel):
    """An operator's change of a limit (``coditect-tasks limits set``): at least one field."""

    concurrency: int | None = Field(default=None, ge=1)
    rate: float | None = Field(default=None, gt=0)
    per: float | None = Field(default=None, gt=0)


class LimitDefinition(BaseModel):
    name: str
    definition: dict[str, Any] | None = Field(description="The definition now; null once it is gone.")


class Transition(BaseModel):
    """The ``data`` of one server-sent event; its SSE ``id`` is ``id``."""

    id: str
    node: str | None = Field(description="None for the run itself.")
    status: str
    ts: str
    attempt: int | None
    worker: str | None
    error: str | None
    detail: dict[str, Any] | None = Field(
        default=None,
        description="Beyond the status: a throttled node's limit and key, a waiting node's kind (a wait's event and"
        " key), an approval decision's by and comment.",
    )


class Chunk(BaseModel):
    """One entry of a node's streamed output (``call.stream``)."""

    id: str = Field(description="The entry id: Last-Event-ID resumes after it.")
    node: str
    attempt: int = Field(description="The attempt that streamed it.")
    data: Any = Field(description="The chunk: text or JSON, as the agent gave it (null for a rewind).")
    rewind: bool = Field(description="A retried attempt begins its output over: drop what came before.")


class Schedules(BaseModel):
    schedules: list[ScheduleState]


class ScheduleNew(BaseModel):
    """A schedule to add: ``dag`` (the DAG document) and exactly one of ``cron`` and ``every``."""

    name: str
    dag: dict[str, Any]
    cron: str | None = None
    every: str | float | None = Field(default=None, description="Seconds, or a duration: 2s, 5m, 1h.")
    tz: str = "UTC"
    overlap: str = "skip"
    catchup: float = Field(default=60.0, ge=0)
    jitter: float = Field(default=0.0, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)


class Backfill(BaseModel):
    start: str = Field(description="ISO-8601: the first fire time counted.")
    end: str = Field(description="ISO-8601: fire times before it are counted.")


class BackfillRun(BaseModel):
    fire_time: str
    run_id: str


class Backfilled(BaseModel):
    runs: list[BackfillRun]


class Triggered(BaseModel):
    run_id: str


class RampChange(BaseModel):
    """``coditect-tasks agents ramp``: ``percent`` of new runs to version ``to``, the rest to ``base``."""

    to: str
    percent: float = Field(ge=0, le=100)
    base: str | None = Field(default=None, description="Default: the ramp's base, else the unversioned queue.")


class RampState(BaseModel):
    agent: str
    base: str | None = Field(description="The version the rest of new runs go to (null: unversioned).")
    to: str | None = Field(description="The version ramped to (null once rolled back).")
    percent: float
