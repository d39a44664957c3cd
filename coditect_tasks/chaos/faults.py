"""The fault catalogue: each fault runs a small probe DAG through one fault and measures it.

A fault returns an ``Outcome``: its figures (failover time, run latency, executions, nodes that
succeeded twice, runs lost) and a timeline of what happened, in seconds since the fault began;
``verdicts.judge`` holds it against the objectives. Faults act on the command's own probe workers
(``Lab``) and, through the target, on the state Redis.
"""

from __future__ import annotations

import secrets
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import keys
from ..client import Client, DagRun
from ..dag.spec import Dag
from ..embedded import WorkerProcess
from ..errors import EmbeddedStackError
from ..redis_server import send_signal
from ..registry import Registry
from ..settings import Settings, same_redis
from . import probes
from .probes import PROBE_AGENTS, executions, probe
from .proxy import ChaosProxy
from .target import Target

#: Agent modules the probe workers load.
PROBE_MODULES = probes.__name__


@dataclass
class Outcome:
    """What one fault did: its figures, its timeline, and the problems found (by the fault itself
    and by ``verdicts.judge``)."""

    fault: str
    figures: dict[str, Any] = field(default_factory=dict)
    #: The probe run's transitions and the fault's own acts: (seconds since it began, what).
    timeline: list[tuple[float, str]] = field(default_factory=list)
    acts: list[tuple[float, str]] = field(default_factory=list)
    skipped: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def why(self) -> str:
        """What made it skip or fail (empty if it passed)."""
        return self.skipped or "; ".join(self.problems)

    @property
    def verdict(self) -> str:
        return "skipped" if self.skipped else "failed" if self.problems else "passed"


@dataclass(frozen=True)
class Dials:
    """How hard the faults push: Redis stopped for ``pause`` s, a worker cut off for ``partition`` s."""

    pause: float = 3.0
    partition: float = 8.0


class Lab:
    """The probe workers (one reaches Redis through a proxy, for partitions), the client, and every
    run the faults made (for the clean-up)."""

    def __init__(self, target: Target, folder: Path) -> None:
        self.target = target
        self.folder = folder
        self.settings = target.settings
        self.runs: list[str] = []
        self.proxy: ChaosProxy | None = None
        # the client knows the probes' declarations (their time limits go into their messages)
        modules = (*self.settings.agent_modules, PROBE_MODULES)
        self.client = Client(replace(self.settings, agent_modules=modules))
        self.registry = Registry.from_url(self.settings.state_url)
        self.workers: list[WorkerProcess] = []
        try:
            self.workers.append(self._worker(self.settings))
            # the second behind a proxy, where the URL allows one: else a plain second, so a lost
            # worker's node still has somewhere to go
            self.workers.append(self._worker(self._through_proxy() or self.settings))
            for worker in self.workers:
                worker.wait_ready(self.registry, timeout=60)
        except BaseException:
            self.close()
            raise

    def _worker(self, settings: Settings) -> WorkerProcess:
        logs = self.folder / "logs"
        worker = WorkerProcess(
            settings,
            list(PROBE_AGENTS),
            concurrency=1,
            hostname=f"chaos-probe-{len(self.workers) + 1}-{secrets.token_hex(3)}@{socket.gethostname()}",
            log_path=logs / f"probe-{len(self.workers) + 1}.log",
            extra_env={"CODITECT_AGENT_MODULES": PROBE_MODULES},
        )
        return worker.start()

    def _through_proxy(self) -> Settings | None:
        """The settings with the state Redis reached through a proxy: None where the URL names no
        one plain host to put it before (Sentinel, a cluster, TLS, whose certificate names the host)."""
        url = self.settings.state_url
        if urlsplit(url).scheme != "redis":
            return None
        self.proxy = ChaosProxy.towards(url).start()
        proxied = self.proxy.url(url)
        if self.settings.redis_url is None:  # the broker is the state Redis: both go through it
            return replace(self.settings, broker_url=proxied)
        if self.settings.broker_url and same_redis(url, self.settings.broker_url):
            return replace(self.settings, redis_url=proxied, broker_url=proxied)  # still one Redis for it
        return replace(self.settings, redis_url=proxied)

    @property
    def exposed(self) -> WorkerProcess | None:
        """The probe worker behind the proxy, if there is one."""
        return self.workers[1] if self.proxy is not None else None

    def submit(self, dag: Dag) -> DagRun:
        run = self.client.submit(dag)
        self.runs.append(run.id)
        return run

    def running_on(self, run: DagRun, node: str, timeout: float = 30.0) -> WorkerProcess:
        """The probe worker running ``node`` of ``run``, once its probe's body has begun (it counted
        the execution): a fault sooner would hit the attempt before the agent was called."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            doc = run.status()["nodes"][node]
            began = self.client.redis.hget(executions(run.id), node)
            if doc["status"] == "running" and doc["worker"] and began:
                return next(w for w in self.workers if w.hostname == doc["worker"])
            time.sleep(0.02)
        raise EmbeddedStackError(f"node {node} of probe run {run.id} did not start within {timeout:g} s")

    def respawn(self, worker: WorkerProcess) -> None:
        """Replace ``worker`` (killed or stopped) by a new one of the same settings."""
        worker.stop(timeout=5)
        index = self.workers.index(worker)
        self.workers[index] = fresh = self._worker(worker.settings)
        fresh.wait_ready(self.registry, timeout=60)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop(timeout=10)
        self.workers = []
        if self.proxy is not None:
            self.proxy.stop()
        self.client.close()
        self.registry.client.close()


def _stamp(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


def observe(lab: Lab, run: DagRun, began: float, timeout: float) -> tuple[Outcome, list[Any]]:
    """Wait for ``run`` (at most ``timeout`` s), and its figures: latency, executions, duplicates,
    lost; its events on the timeline since ``began``."""
    state = run.wait(timeout=timeout)
    events = list(run.events()) if state != "running" else []
    succeeded = Counter(e.node for e in events if e.node and e.status == "succeeded")
    ran = {str(k): int(v) for k, v in lab.client.redis.hgetall(executions(run.id)).items()}
    submitted = _stamp(run.status()["submitted_at"])
    ended = max((_stamp(e.ts) for e in events), default=time.time())
    outcome = Outcome("")
    outcome.figures = {
        "run_seconds": round(ended - submitted, 2),
        "executions": sum(ran.values()),
        "duplicates": sum(1 for n in succeeded.values() if n > 1),
        "lost": 0 if state == "succeeded" else 1,
    }
    outcome.timeline = [
        (round(_stamp(e.ts) - began, 3), f"{e.node or 'run'} {e.status}" + (f" on {e.worker}" if e.worker else ""))
        for e in events
    ]
    return outcome, events


def _first_begun(events: list[Any], node: str, after: float) -> float | None:
    return next(
        (_stamp(e.ts) for e in events if e.node == node and e.status == "running" and _stamp(e.ts) > after), None
    )


def _probe(name: str, *nodes: tuple[str, float, list[str]]) -> Dag:
    dag = Dag(f"chaos-{name}")
    for node, seconds, after in nodes:
        dag.node(node, "chaos-probe", params={"seconds": seconds}, after=after)
    return dag


def worker_kill(lab: Lab, dials: Dials, timeout: float) -> Outcome:
    """SIGKILL of the probe worker running a node, mid-node: the node runs again elsewhere once its
    lease expires."""
    run = lab.submit(_probe("worker-kill", ("work", 2.0, [])))
    worker = lab.running_on(run, "work")
    began = time.time()
    worker.kill(group=True)
    outcome, events = observe(lab, run, began, timeout)
    lab.respawn(worker)
    again = _first_begun(events, "work", began)
    outcome.figures["failover_seconds"] = round(again - began, 2) if again else None
    outcome.acts = [(0.0, f"SIGKILL {worker.hostname}")]
    return outcome


def worker_term(lab: Lab, dials: Dials, timeout: float) -> Outcome:
    """SIGTERM to the whole process group of the worker running a node (a scale-in): the node
    finishes on that worker, once, and the worker exits."""
    run = lab.submit(_probe("worker-term", ("work", 3.0, [])))
    worker = lab.running_on(run, "work")
    time.sleep(1.0)
    began = time.time()
    assert worker.proc is not None
    send_signal(worker.proc, signal.SIGTERM, group=True)
    outcome, _ = observe(lab, run, began, timeout)
    worker.proc.wait(timeout=60)
    exited = time.time()
    finished_on = run.status()["nodes"]["work"]["worker"]
    lab.respawn(worker)
    outcome.figures["worker_exit_seconds"] = round(exited - began, 2)
    outcome.figures["finished_on_its_worker"] = finished_on == worker.hostname
    if finished_on != worker.hostname:
        outcome.problems.append(f"the node finished on {finished_on}, not on the worker told to stop")
    outcome.acts = [(0.0, f"SIGTERM to {worker.hostname}'s group"), (round(exited - began, 3), "the worker exited")]
    return outcome


def _through_redis(lab: Lab, name: str, act: Callable[[], str], timeout: float) -> Outcome:
    """A chain of probe nodes with ``act`` (what it did) done to Redis once the first runs: the
    failover is the time from the end of the act to the chain's next transition."""
    run = lab.submit(_probe(name, ("a", 0.5, []), ("b", 0.5, ["a"]), ("c", 0.5, ["b"]), ("d", 0.5, ["c"])))
    lab.running_on(run, "a")
    began = time.time()
    what = act()
    healed = time.time()
    outcome, events = observe(lab, run, began, timeout)
    after = [_stamp(e.ts) for e in events if _stamp(e.ts) > healed]
    outcome.figures["failover_seconds"] = round(min(after) - healed, 2) if after else None
    outcome.acts = [(0.0, what), (round(healed - began, 3), "Redis answers again")]
    return outcome


def redis_pause(lab: Lab, dials: Dials, timeout: float) -> Outcome:
    """Redis stopped (SIGSTOP) for a few seconds mid-run, then continued."""

    def act() -> str:
        lab.target.pause_redis()
        try:
            time.sleep(dials.pause)
        finally:
            lab.target.resume_redis()
        return f"SIGSTOP Redis for {dials.pause:g} s"

    return _through_redis(lab, "redis-pause", act, timeout)


def redis_restart(lab: Lab, dials: Dials, timeout: float) -> Outcome:
    """Redis restarted mid-run: stopped (its data written down) and started again."""

    def act() -> str:
        lab.target.restart_redis()
        return "restart Redis"

    return _through_redis(lab, "redis-restart", act, timeout)


def partition(lab: Lab, dials: Dials, timeout: float) -> Outcome:
    """The probe worker behind the proxy cut off from Redis for longer than a lease, mid-node: its
    node runs again on the other worker, and its own late completion is fenced off."""
    assert lab.proxy is not None and lab.exposed is not None
    run = lab.submit(_probe("partition", ("left", 2.0, []), ("right", 2.0, [])))
    lab.running_on(run, "left")
    lab.running_on(run, "right")
    doc = run.status()["nodes"]
    cut = next(n for n in ("left", "right") if doc[n]["worker"] == lab.exposed.hostname)
    began = time.time()
    lab.proxy.partition(dials.partition)
    outcome, events = observe(lab, run, began, timeout)
    again = _first_begun(events, cut, began)
    outcome.figures["failover_seconds"] = round(again - began, 2) if again else None
    outcome.acts = [(0.0, f"cut {lab.exposed.hostname} off from Redis"), (dials.partition, "healed")]
    return outcome


def duplicate(lab: Lab, dials: Dials, timeout: float) -> Outcome:
    """A node's message delivered twice, while it runs and after it ended: it runs once."""
    run = lab.submit(_probe("duplicate", ("work", 1.5, [])))
    lab.running_on(run, "work")
    task_id = str(lab.client.redis.hget(keys.run_prefix(run.id) + "task", "work"))
    began = time.time()
    _resend(lab, run.id, "work", task_id)
    outcome, _ = observe(lab, run, began, timeout)
    late = time.time()
    _resend(lab, run.id, "work", task_id)
    time.sleep(1.0)  # time for a worker to take the late copy (and drop it)
    again = int(lab.client.redis.hget(executions(run.id), "work") or 0)
    outcome.figures["executions"] = again
    if again != 1:
        outcome.problems.append(f"the node ran {again} times for one message sent three times")
    outcome.acts = [
        (0.0, "the running node's message sent again"),
        (round(late - began, 3), "sent again after it ended"),
    ]
    return outcome


def _resend(lab: Lab, run_id: str, node: str, task_id: str) -> None:
    lab.client.app.send_task(
        probe.task_name, kwargs={"run_id": run_id, "node_id": node}, task_id=task_id, queue=probe.queue
    )


def slow(lab: Lab, dials: Dials, timeout: float) -> Outcome:
    """An agent past its soft time limit: its node fails at the limit with a clear timeout, and its
    worker goes on with the next run at once."""
    dag = Dag("chaos-slow")
    dag.node("work", "chaos-slow")
    stuck = lab.submit(dag)
    lab.running_on(stuck, "work")
    began = time.time()
    state = stuck.wait(timeout=timeout)
    node = stuck.status()["nodes"]["work"]
    timed_out = state == "failed" and "timed out" in str(node["error"])
    failed_at = _stamp(node["finished_at"]) if node["finished_at"] else time.time()
    outcome, events = observe(lab, lab.submit(_probe("after-slow", ("work", 0.2, []))), began, timeout)
    next_begun = _first_begun(events, "work", failed_at)
    outcome.figures["timed_out_after_seconds"] = round(failed_at - _stamp(node["started_at"]), 2)
    outcome.figures["failover_seconds"] = round(next_begun - failed_at, 2) if next_begun else None
    if not timed_out:
        outcome.problems.append(f"the slow node ended {state} ({node['error']}), not timed out at its soft limit")
    outcome.acts = [(0.0, "a node runs past its 1 s soft limit"), (round(failed_at - began, 3), "it timed out")]
    return outcome


#: The catalogue, in the order the command runs it: name → (fault, what it needs of the target).
CATALOGUE: dict[str, tuple[Callable[[Lab, Dials, float], Outcome], str]] = {
    "worker-kill": (worker_kill, ""),
    "worker-term": (worker_term, ""),
    "redis-pause": (redis_pause, "pause"),
    "redis-restart": (redis_restart, "restart"),
    "partition": (partition, "proxy"),
    "duplicate": (duplicate, ""),
    "slow": (slow, ""),
}


def run_fault(lab: Lab, name: str, dials: Dials, timeout: float) -> Outcome:
    """Fault ``name``, or why it was skipped on this target."""
    fault, needs = CATALOGUE[name]
    why = {
        "pause": lab.target.cannot_pause,
        "restart": lab.target.cannot_restart,
        "proxy": None if lab.proxy is not None else "the state Redis's URL names no one host to put a proxy before",
        "": None,
    }[needs]
    if why:
        return Outcome(name, skipped=why)
    outcome = fault(lab, dials, timeout)
    outcome.fault = name
    return outcome
