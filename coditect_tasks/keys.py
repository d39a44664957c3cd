"""Every Redis key name coditect-tasks writes, and every constant its Lua scripts share, in one place.

All keys share the ``coditect:{<tag>}:`` prefix so that an operator can find (and a test
can flush) everything we own without touching the broker's own keys. Its ``{<tag>}`` is a Redis
Cluster hash tag, one per *cell*: a run lives in one cell (named by its id), with its share of the
engine's global structures (leases, the history stream, the outbox, the counters …), so every
script touches the keys of one cell, on one node; readers of a global structure merge the cells.
A deployment has one cell (tag ``0``: the constants below are its keys) unless it runs on a Redis
Cluster, where ``CODITECT_REDIS_CELLS`` spreads runs over many (``in_cell``). The registry, the
definitions of limits, ramps and schedules, locks and breakers are cell 0's alone, and so are the
runs that hold a limit: a limit holds across every run that can take it. The Lua scripts never
spell a key or a limit themselves: ``engine.prelude.lua_prelude()`` renders these constants as the
first lines of every script when the engine loads them, relative to the cell the script runs on.
"""

from __future__ import annotations

from .cells import MAX_CELLS as MAX_CELLS
from .cells import RUN_ID_DIGITS as RUN_ID_DIGITS
from .cells import cell_of as cell_of
from .cells import cell_prefix
from .cells import in_cell as in_cell
from .cells import new_run_id as new_run_id
from .cells import run_id_in as run_id_in

PREFIX = cell_prefix(0)
#: Keys written before the hash tag (release 0.x): ``coditect-tasks upgrade-keys`` renames them.
UNTAGGED_PREFIX = "coditect:"

#: The one key every engine script names (its KEYS[1]; the script never reads it): a Redis Cluster
#: client sends the script to the node that holds the platform's slot.
ROUTE = f"{PREFIX}route"


def route(cell: int = 0) -> str:
    """The key an engine script names for cell ``cell`` (its KEYS[1]): the script's keys are that
    cell's (``engine.prelude``), and a cluster client sends it to the node of the cell's slot."""
    return in_cell(ROUTE, cell)


#: SET of worker hostnames that have announced themselves (pruned lazily).
WORKERS = f"{PREFIX}workers"

#: Celery queue (and task) name prefix: agent ``coder`` is served on ``agents.coder``.
AGENT_QUEUE_PREFIX = "agents."

WORKER_PREFIX = f"{PREFIX}worker:"
RUN_KEY_PREFIX = f"{PREFIX}run:"
RESERVED_PREFIX = f"{PREFIX}reserved:"


def worker(hostname: str) -> str:
    """JSON description of one live worker; expires unless its heartbeat renews it."""
    return f"{WORKER_PREFIX}{hostname}"


def agent_queue(agent: str) -> str:
    return f"{AGENT_QUEUE_PREFIX}{agent}"


#: ZSET of run ids scored by submit time (seconds since the epoch): the runs Redis holds, running
#: or finished within the retention window (``Settings.live_retention``); older ones are in the history.
RUNS = f"{PREFIX}runs"

#: ZSET of finished runs whose history the recorder has not written yet, scored by when they
#: finished: their live state stays until it has (``coditect_runs_unrecorded``).
UNRECORDED = f"{PREFIX}unrecorded"

#: ZSET of runs whose roots are still being queued, slice by slice (``ROOT_SLICE``), scored by when
#: the reaper goes on with them if their submitter stopped (died, lost Redis).
SUBMITTING = f"{PREFIX}submitting"

#: ZSET of recorded runs scored by when their live state expires; the recorder drops them from
#: ``RUNS`` then.
RETIRED = f"{PREFIX}retired"

#: STREAM of every run and node transition, consumed by the history recorder.
HISTORY = f"{PREFIX}history"

#: Consumer group of the history recorder on ``HISTORY``.
HISTORY_GROUP = "recorder"

#: STREAM of history entries the recorder could not write (fields, ``error``, ``attempts``).
HISTORY_DEAD = f"{PREFIX}history:dead"


def run_prefix(run_id: str) -> str:
    """Prefix of every key of one run, in its cell: ``<prefix>run`` (hash), ``<prefix>status`` (node → status) …"""
    return f"{in_cell(RUN_KEY_PREFIX, cell_of(run_id))}{run_id}:"


#: Suffix of ``run_prefix`` of the pub/sub channel on which a run announces its terminal state.
DONE_CHANNEL = "done"


def run_channel(run_id: str) -> str:
    """Pub/sub channel on which a run announces that it reached a terminal state."""
    return run_prefix(run_id) + DONE_CHANNEL


#: Pattern of every run's end channel, in every cell (a Redis glob's braces are plain characters).
RUN_CHANNELS = "coditect:{*}:run:*:" + DONE_CHANNEL


def channel_run(channel: str) -> str:
    """The run id of a run's end channel (``run_channel``)."""
    return channel.partition("}:run:")[2].removesuffix(":" + DONE_CHANNEL)


#: Suffix of ``run_prefix`` of the pub/sub channel of every transition of a run: ``<stream id> <JSON>``,
#: published beside the history stream's entry when someone listens (``dag/events.py``).
EVENTS_CHANNEL = "events"


def events_channel(run_id: str) -> str:
    return run_prefix(run_id) + EVENTS_CHANNEL


#: Per-run hashes (suffixes of ``run_prefix``), node id → value unless noted.
RUN_HASHES = (
    "run",  # field → value: name, status, submitted_at, finished_at, total, remaining, active, error,
    # first_event (its first history stream id), events (how many it has recorded), seq (RUN_SEQ at
    # submit), fair (its fairness key); a spawned child's parent and parent_node (the node that spawned it),
    # root (its tree's first run), depth (levels below root), spawned_by ('<parent>|<node>|<attempt>');
    # a root's tree (nodes in its whole tree, once a node spawned); a scheduled run's schedule and
    # fire_time (ISO-8601, UTC); versions (JSON agent → version its ramp pinned, '' unversioned)
    "status",
    "attempts",
    "pending",
    "node",  # node → its description (JSON); '~<node>' → its marks '<seq>,<order>,<phase>' (marks.lua);
    # '#' → NODE_LAYOUT; '#<template key>' ('<agent>|<timeout>') → the id of its message template in TEMPLATES
    "params",
    "result",
    "error",
    "worker",
    "started",
    "finished",
    "seq",  # node → seq of its newest message (a run of the previous release; this one's are in NODE)
    "tpl",  # template key ('<agent>|<timeout>') → its message template (releases before shared templates)
    "tpls",  # template key → the id of its message template in TEMPLATES (the previous release)
    "routed",
    "t0",  # node → Redis server time (s) its running attempt began, for the duration histogram
    "trace",  # node → W3C traceparent of its succeeded attempt's span
    "task",  # node → Celery task id of the message its running attempt began from
    "order",  # node → place of its newest message on its queue (PUSHED; the previous release: now in NODE)
    "retried",  # node → retries it has taken (the retry policy's count; failovers are not retries)
    "items",  # foreach item '<node>#k' → its value (JSON), until its node completes
    "fanout",  # foreach node → item count; '<node>|done' → items succeeded; '<node>|open' → not yet ended
    "waiting",  # node → its predecessors neither running nor succeeded (absent or 0: it is upcoming while pending)
    "phase",  # node → the FRONTIER field it counts in ('demand|<agent>', 'upcoming|<agent>'; previous release)
    "unpushed",  # LIST of the roots not queued yet, while a submit queues them in slices (ROOT_SLICE), and of
    # a wide fan-out's successors past the first READY_SLICE, while its completing process queues them
    "throttled",  # node → '<limit>|<since>|<key>': held queued by that full limit since then (limits.lua)
    "awaits",  # waiting node → '<event>|<key>' it waits for (waits.lua)
    "approvals",  # approval node → JSON list of its decisions {by, decision, comment, at}
    "children",  # spawning node → JSON list of the run ids of the children it spawned (spawns.lua)
    "spawns",  # '<node>|left', '|retry', '|one' while it waits for its children; child run id → its outcome
    "output",  # STREAM of what nodes streamed (call.stream): n (node), a (attempt), c (a chunk, JSON) or r
    # (a rewind: a new attempt of n begins its output again); kept with the run document (output.lua)
    "streamed",  # node → '<attempt>|<chunks>' its latest attempt has streamed
    "doc",  # STRING, a retired run's: JSON {v: 1, dag, nodes: {node → its NODE_FIELDS values in order}}, in
    # place of those hashes and the run hash's dag, for its retention window (retire.lua; a change to
    # NODE_FIELDS' order makes a new v)
)

#: The node hashes a run's document is read from (with its ``run`` hash).
NODE_FIELDS = (
    "status",
    "attempts",
    "worker",
    "started",
    "finished",
    "result",
    "error",
    "routed",
    "throttled",
    "awaits",
    "approvals",
    "children",
)
#: Run hashes only a running run needs: a retired run drops them at once and keeps the rest (what
#: its document is read from) for its retention window.
SPENT_HASHES = tuple(h for h in RUN_HASHES if h not in ("run", "output", "doc") and h not in NODE_FIELDS)
#: Bytes of one streamed chunk (as JSON) at most.
MAX_CHUNK_BYTES = 64 * 1024

#: The layout of a run's node marks and template ids (its ``node`` hash's ``#`` field): packed in the
#: ``node`` hash (``engine/lua/common/marks.lua``); a run without it keeps the previous release's hashes.
NODE_LAYOUT = "2"

#: HASH of message templates by id (``engine.message.template_id``), shared by every run of the cell:
#: a template holds nothing of one run. Bounded by the agents × node timeouts in use; never expires.
TEMPLATES = f"{PREFIX}templates"

#: HASH of counters the metrics exporter serves; written only by the engine's Lua scripts.
#: Fields: ``runs_submitted``, ``runs|<status>``, ``attempts|<agent>``, ``nodes|<agent>|<outcome>``,
#: ``failovers|<agent>``, ``duration|<agent>|<le>`` (one histogram bucket, not cumulative),
#: ``duration_sum|<agent>``, ``run_duration|<le>``, ``run_duration_sum``.
METRICS = f"{PREFIX}metrics"

#: HASH of the frontier an autoscaler reads, kept by the Lua scripts on every transition (not scans):
#: ``demand|<agent>`` → nodes (and foreach items) of that agent queued, reserved or running;
#: ``upcoming|<agent>`` → its pending nodes whose every unfinished predecessor is running now.
FRONTIER = f"{PREFIX}frontier"

#: ZSET of running attempts ("run|node|attempt") scored by lease expiry (Redis server time).
LEASES = f"{PREFIX}leases"

#: ZSET of queued nodes ("run|node|q", or "|l" for a second look) scored by when the reaper checks
#: that their message is still on its way: written by the previous release (this one watches queues,
#: ``WATCHED``), still checked.
WATCHES = f"{PREFIX}watches"

#: ZSET of queues scored by when the reaper next checks the messages the engine sent to each
#: (``SENT_PREFIX``): one member a queue, however many of its nodes wait.
WATCHED = f"{PREFIX}watched"
#: Prefix of STREAM ``<prefix><queue>``: the messages the engine pushed onto that queue, oldest first,
#: until the reaper finds each taken (field ``m``: ``<run>|<node>|<seq>|<order>``).
SENT_PREFIX = f"{PREFIX}sent:"
#: HASH ``<run>|<node>|<seq>`` → when the reaper first found that message popped from its queue but
#: noted by no live worker: lost if it still is ``LEASE_SECONDS`` later.
LOOKED = f"{PREFIX}looked"


#: HASH queue → how many node messages the engine has put on it: each message carries its
#: number in header ``ORDER_HEADER``, so the queue's oldest message tells which were popped.
PUSHED = f"{PREFIX}pushed"
ORDER_HEADER = "coditect_order"

#: ZSET of "run|node" waiting out a retry delay, scored by when to queue them (Redis server time).
DELAYED = f"{PREFIX}delayed"

#: STRING: Redis server time (s) of the last reap by any worker; a long gap means an outage.
REAPED_AT = f"{PREFIX}reaped_at"

#: ZSET of worker hostnames that hold reserved node messages, scored by first reservation.
RESERVERS = f"{PREFIX}reservers"

#: LIST of "<queue>\n<message envelope>" the engine wrote for a broker it cannot push to from Lua
#: (RabbitMQ): workers drain it there (``worker/outbox.py``), oldest first.
OUTBOX = f"{PREFIX}outbox"
#: Prefix of LIST ``<prefix><worker>``: the outbox entries that worker is publishing right now;
#: moved back to ``OUTBOX`` if it dies before the broker confirmed them (reclaim.lua).
OUTBOX_HELD_PREFIX = f"{PREFIX}outbox:held:"


def outbox_held(hostname: str, cell: int = 0) -> str:
    return f"{in_cell(OUTBOX_HELD_PREFIX, cell)}{hostname}"


#: Prefix of STRING ``<prefix><task id>``: "run|node|task id" of the node a pool process runs on
#: message ``<task id>`` after finishing that message's own node (see ``TAKE_NEXT_SECONDS``), so the
#: main process, which knows only the message, can end it after a hard time limit or a shutdown.
TAKEN_AFTER_PREFIX = f"{PREFIX}taken-after:"


def taken_after(task_id: str) -> str:
    """In the cell of the message's run (a node message's task id is ``<run>:<node>:<seq>``)."""
    return f"{in_cell(TAKEN_AFTER_PREFIX, cell_of(task_id.partition(':')[0]))}{task_id}"


#: HASH limit name → its definition as JSON (``limits.Limit.to_json``): what the engine enforces, the
#: declared one (``LIMITS_DECLARED``, written by whoever declares it in code) with an operator's
#: changes (``LIMITS_SET``, ``coditect-tasks limits set``) over it. Kept by limits.lua.
LIMITS = f"{PREFIX}limits"
LIMITS_DECLARED = f"{PREFIX}limits:declared"
LIMITS_SET = f"{PREFIX}limits:set"
#: Prefix of one limit's keys: ``<prefix><limit>`` is a SET of the key values in use (the repos of
#: ``key="repo"``; '' for an unkeyed limit); ``<prefix><limit>|<key value>|`` + ``h`` (ZSET of the
#: "run|node" holding it), ``w`` (ZSET of those waiting for it, scored by when they began to wait),
#: ``r`` (ZSET of the rate window's charges "run|node|time|units") and ``u`` (STRING: their units).
LIMIT_PREFIX = f"{PREFIX}limit:"
#: ZSET of "<limit>|<key value>" whose rate window frees units at the score (Redis server time): the
#: pacer (``worker/pacer.py``) then lets their waiters go. Published on ``CLOCK_CHANNEL`` when it
#: gets an earlier time, so a pacer asleep until a later one wakes.
LIMITS_DUE = f"{PREFIX}limits:due"
#: Pub/sub channel that wakes the pacers when something is due earlier than they sleep until.
CLOCK_CHANNEL = f"{PREFIX}clock"
#: Waiters one freed limit lets go in one script at most; the pacer goes on with the rest.
WAKE_BUDGET = 64

#: HASH queue → the hand-off window: how many node messages the engine keeps on that agent's
#: broker list at most (half the slots of its live workers; the heartbeats write it). Ready nodes past
#: it wait in the engine's own order (``READY_PREFIX``) and go to the list as workers take messages,
#: so a node of higher priority, of a key served less, or on a run's critical path passes them.
#: A queue with no window (no live worker yet) takes every message at once.
WINDOWS = f"{PREFIX}windows"
#: Prefix of the engine's ready nodes past the window: ``<prefix><queue>`` is a ZSET of the
#: priorities that have any (scored by -priority); ``<prefix><queue>|<priority>`` a LIST of the
#: fairness keys that have any, served round robin; ``<prefix><queue>|<priority>|<key>`` a ZSET of
#: "run|node" scored by the run's submit sequence × ``RANK_SPAN`` + the node's rank in its run.
READY_PREFIX = f"{PREFIX}ready:"
#: SET of the queues that have nodes waiting past their window (tidied by window.lua).
READY_QUEUES = f"{PREFIX}ready-queues"
#: STRING counter: the order runs were submitted in (a run's ``seq`` field).
RUN_SEQ = f"{PREFIX}run-seq"
#: Ranks a run's nodes can take (its critical-path order): far above ``max_nodes``.
RANK_SPAN = 2**20
#: A node's priority when neither it nor its submit gives one (0 lowest, 9 highest).
DEFAULT_PRIORITY = 5

#: ZSET of waiting nodes ("run|node": a sleep, or a wait or approval with a timeout) scored by their
#: deadline (Redis server time): the pacer ends them then (a sleep succeeds, a wait times out).
WAITS_DUE = f"{PREFIX}waits:due"
#: Prefix of SET ``<prefix><event>|<key>``: the waiting nodes ("run|node") an event of that name and
#: key resolves.
WAITERS_PREFIX = f"{PREFIX}waiters:"
#: Prefix of ZSET ``<prefix><event>|<key>`` (event ids scored by when they were sent) and HASH
#: ``<prefix><event>|<key>|data`` (id → data): the events a wait that begins later may still take
#: (its lookback), kept ``EVENT_RETENTION_SECONDS``.
EVENTS_PREFIX = f"{PREFIX}events:"
#: Seconds an event is kept for the lookback of waits that begin after it was sent (a day).
EVENT_RETENTION_SECONDS = 24 * 3600


#: HASH agent name → its ramp as JSON (``submitting.ramps.Ramp``): the version new runs are pinned to.
RAMPS = f"{PREFIX}ramps"

#: HASH schedule name → its definition as JSON (``schedules.spec.Schedule.to_json``).
SCHEDULES = f"{PREFIX}schedules"
#: ZSET of the schedules that are not paused, scored by when (ms since the epoch, jitter included)
#: their next fire time is due: every scheduler reads it (``schedules/scheduler.py``).
SCHEDULES_DUE = f"{PREFIX}schedules:due"
#: SET of the schedules holding a fire back until their previous run ends (``--overlap buffer-one``).
SCHEDULES_BUFFERED = f"{PREFIX}schedules:buffered"
#: Prefix of HASH ``<prefix><name>``: ``next`` (its next fire time, ms), ``last_run``, ``last_fire``
#: (ms), ``buffered`` (the fire time held back, ms); advanced by schedule.lua, compare-and-set, so
#: that of the schedulers racing for one fire time one moves it on.
SCHEDULE_PREFIX = f"{PREFIX}schedule:"


def schedule_state(name: str) -> str:
    return f"{SCHEDULE_PREFIX}{name}"


#: STRING ``<owner>|<token>`` of a held lock (``state/lock.py``), expiring with its lease.
#: STRING a durable write's barrier increments: WAIT on the same connection then tells how many
#: replicas have it, and so every write before it (``connection.barrier``).
REPLICATED = f"{PREFIX}replicated"
#: Seconds a durable write waits for its replicas (``CODITECT_REDIS_MIN_REPLICAS``) at most.
REPLICA_WAIT_SECONDS = 2.0
LOCK_PREFIX = f"{PREFIX}lock:"
#: STRING counter of a lock's fencing tokens: never expires, so a token is never handed out twice.
FENCE_PREFIX = f"{PREFIX}fence:"
#: HASH ``value`` (JSON), ``fence`` (the newest token that wrote it) of one shared state key.
STATE_PREFIX = f"{PREFIX}state:"


def idempotency(key: str, cell: int = 0) -> str:
    """STRING "<run id> <DAG digest>": the run a submit with idempotency ``key`` started (expiring),
    in the cell that run is in."""
    return f"{cell_prefix(cell)}idempotency:{key}"


def reserved(hostname: str, cell: int = 0) -> str:
    """SET of "run|node" of cell ``cell`` whose message this worker has received but not yet begun."""
    return f"{in_cell(RESERVED_PREFIX, cell)}{hostname}"


def breaker_namespace(agent: str) -> str:
    """pybreaker's Redis storage namespace of one agent's circuit breaker."""
    return f"{PREFIX}breaker:{agent}"


def breaker_prefix(agent: str) -> str:
    """Prefix of the keys in which pybreaker keeps that breaker (``state``, ``fail_counter``, …)."""
    return f"{breaker_namespace(agent)}:pybreaker:"


def breaker_state(agent: str) -> str:
    """The key in which pybreaker keeps that breaker's state (closed, open, half-open)."""
    return breaker_prefix(agent) + "state"


# Limits the Lua scripts enforce (``engine/prelude.py``); Python code that needs one reads it here.

#: Seconds an attempt's lease lasts without renewal: a running attempt not renewed for this long is presumed dead.
LEASE_SECONDS = 5.0
#: Bytes of one node's result (a foreach node's: all its items' results) at most, as JSON.
MAX_RESULT_BYTES = 8 * 1024 * 1024
#: Seconds between two reaps by any worker beyond which Redis is taken to have been unreachable
#: (stalled, restarting, cut off from every worker): leases then get one more length to be renewed.
REAP_GAP_SECONDS = 3.0
#: Seconds a node may sit queued before it is checked for a message lost in transit.
QUEUED_CHECK_SECONDS = 15.0
#: Bytes of a result or error copied into the history stream (and kept in the history database).
HISTORY_CAP = 16384
#: Entries the history stream keeps at most (about: trimmed with ``MAXLEN ~``) while the recorder is
#: down; older unrecorded transitions are dropped beyond it, so Redis memory stays bounded.
HISTORY_MAX_ENTRIES = 1_000_000
#: Seconds after its message began during which a pool process that finished a node takes the next
#: message of its queue itself, in the same script (at most a tenth of the message's soft limit):
#: one round trip per node instead of the consumer's four. Its slot goes back to Celery after that.
TAKE_NEXT_SECONDS = 0.25
#: Roots queued per script call: a run with more is queued in slices, each its own call, so that no
#: script holds Redis for long (100,000 roots in one ran past Redis's 5 s busy-script limit).
ROOT_SLICE = 2_000
#: Successors a completing node's script queues itself: a wider fan-out's rest waits in the run's
#: ``unpushed`` list and goes out in slices of as many, each its own call by the same process (or,
#: if it stops, by the reaper), so the first successors are takeable at once, whatever the width.
READY_SLICE = 16
#: Seconds without a slice after which the reaper goes on queueing a run's roots itself.
SUBMIT_STALL_SECONDS = 10.0
#: Messages one take-next looks at at most (stale ones are dropped, as ``begin`` drops them).
TAKE_NEXT_TRIES = 4
#: Upper bounds (s) of the node and run duration histograms; an observation lands in the first that holds it.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
