"""Graceful scale-in: what a worker does between SIGTERM and its exit.

Kubernetes removes a pod with SIGTERM, then SIGKILL once its grace period is over. Celery's
warm shutdown (SIGTERM) already stops consuming at once, and its Redis transport returns the
messages the worker prefetched when the connection closes, but it waits for running calls
without limit. Here running nodes get ``CODITECT_SHUTDOWN_GRACE`` seconds; each one still
running then is handed off (its attempt ended and its node queued again at once, so another
pool starts it within seconds, not after its lease expires), and the worker goes on to Celery's
cold shutdown, which stops the calls. SIGQUIT and SIGKILL keep Celery's meaning.

The same holds when SIGTERM reaches the pool processes too: systemd's ``KillMode=control-group``,
``kill -TERM -<pgid>`` or a container runtime signalling every process. Celery resets SIGTERM in
its pool processes to the default, which kills the running call at once; here a pool process
ignores it while a call runs, until the main process has begun its cold shutdown (after the
grace, or SIGQUIT, or Ctrl-C), whose own SIGTERMs then stop it. So a call is not stopped by
``revoke(terminate=True)`` with SIGTERM either: send SIGKILL for that.
"""

from __future__ import annotations

import logging
import mmap
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

import redis
from celery import Celery, signals
from celery.worker import state

from ..engine.transitions import Engine, engine_for

#: Set once the worker was told to stop: it is no longer ready (``health``).
DRAINING = threading.Event()
#: Seconds each hand-off may wait for an unreachable Redis (the lease expires instead after that).
HANDOFF_OUTAGE_SECONDS = 3.0

log = logging.getLogger(__name__)

#: One byte shared with every pool process forked after this import (an anonymous shared map):
#: 1 once the main process has begun its cold shutdown, so a pool process's SIGTERM is meant for it.
COLD = mmap.mmap(-1, 1)
#: The worker's main process (this module is imported there before the pool forks).
MAIN_PID = os.getpid()
#: The SIGTERM handler billiard gave this pool process, while a call holds SIGTERM.
_HELD: list[Any] = []
#: Set once Celery's cold-shutdown handlers are wrapped (a consumer restart starts the step again).
_COLD_SIGNALS_MARKED: list[bool] = []


def hold_sigterm(**kwargs: Any) -> None:
    """In a pool process, as a call begins: a SIGTERM before the cold shutdown leaves it running."""
    if os.getpid() != MAIN_PID and not _HELD:  # a solo or threads pool runs calls in the main process
        _HELD.append(signal.signal(signal.SIGTERM, _on_sigterm))


def release_sigterm(**kwargs: Any) -> None:
    """As the call ends: billiard's handler again (an idle pool process may go at once)."""
    if _HELD:
        signal.signal(signal.SIGTERM, _HELD.pop())


def _mark_cold(signum: int) -> None:
    """Wrap Celery's handler of ``signum`` (a cold shutdown): the pool processes learn it first."""
    previous = signal.getsignal(signum)
    if not callable(previous):
        return

    def cold(number: int, frame: FrameType | None) -> None:
        COLD[0] = 1
        previous(number, frame)

    signal.signal(signum, cold)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if not COLD[0]:
        return  # the main process drains: it waits for this call within the grace
    release_sigterm()  # the main process stops its pool: go as billiard would
    handler = signal.getsignal(signal.SIGTERM)
    if callable(handler):
        handler(signum, frame)
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


# At import, in the main process: every pool process forked after it runs them around each call.
# (billiard resets SIGTERM after Celery's process initializer, so the handler goes in per call.)
signals.task_prerun.connect(hold_sigterm, weak=False, dispatch_uid="coditect-hold-sigterm")
signals.task_postrun.connect(release_sigterm, weak=False, dispatch_uid="coditect-release-sigterm")


def install(app: Celery, hostname: str) -> None:
    """Drain on SIGTERM (Celery's warm shutdown), in a thread: signal handlers must return. Mark
    Celery's cold shutdowns (SIGQUIT, SIGINT) before its handlers stop the pool processes."""
    # (a worker in a thread of a test process, the pytest plugin's, has no signals of its own)
    if not _COLD_SIGNALS_MARKED and threading.current_thread() is threading.main_thread():
        _COLD_SIGNALS_MARKED.append(True)
        for cold in (signal.SIGQUIT, signal.SIGINT):
            _mark_cold(cold)

    def on_shutting_down(how: str = "", **kwargs: Any) -> None:
        if how == "Cold":
            COLD[0] = 1
        if how == "Warm" and not DRAINING.is_set():
            DRAINING.set()
            threading.Thread(target=drain, args=(app, hostname), name="coditect-drain", daemon=True).start()

    signals.worker_shutting_down.connect(on_shutting_down, weak=False, dispatch_uid="coditect-drain")


def drain(app: Celery, hostname: str) -> None:
    """Wait up to the grace for running calls, hand off the rest, then shut down cold."""
    deadline = time.monotonic() + app.settings.shutdown_grace
    while _running() and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _running()
    if not left:
        return  # the warm shutdown ends by itself
    handed = False
    try:
        handed = _hand_off(app, hostname, left)
    finally:
        if handed or _running():  # a call that ended at the last moment needs no cold shutdown
            COLD[0] = 1  # before Celery's handler SIGTERMs the pool processes
            os.kill(os.getpid(), signal.SIGQUIT)  # Celery's cold shutdown: stop the calls, exit


def _running() -> list[Any]:
    """The requests running now (a snapshot of a set the main thread changes)."""
    while True:
        try:
            return list(state.active_requests)
        except RuntimeError:  # changed size during iteration: look again
            continue


def _hand_off(app: Celery, hostname: str, requests: list[Any]) -> bool:
    """Queue the node of each request again; whether any was handed off."""
    engine = Engine(engine_for(app.settings.state_url).client, outage_seconds=HANDOFF_OUTAGE_SECONDS)
    handed = False
    for request in requests:
        kwargs = request.kwargs or {}
        run_id, node_id = kwargs.get("run_id"), kwargs.get("node_id")
        if not (run_id and node_id):
            continue
        try:
            ended = engine.hand_off(run_id, node_id, hostname, request.id)
            if not ended and (taken := engine.taken_after(request.id)):
                run_id, node_id, message = taken  # the node the process took after the message's own
                ended = engine.hand_off(run_id, node_id, hostname, message)
            if ended:
                handed = True
                log.warning("handed off %s of run %s: the shutdown grace is over", node_id, run_id)
        except redis.RedisError as exc:
            log.warning("could not hand off %s (its lease will expire instead): %s", node_id, exc)
    return handed
