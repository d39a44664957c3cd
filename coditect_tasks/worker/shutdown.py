"""Graceful scale-in: what a worker does between SIGTERM and its exit.

Kubernetes removes a pod with SIGTERM, then SIGKILL once its grace period is over. Celery's
warm shutdown (SIGTERM) already stops consuming at once, and its Redis transport returns the
messages the worker prefetched when the connection closes, but it waits for running calls
without limit. Here running nodes get ``CODITECT_SHUTDOWN_GRACE`` seconds; each one still
running then is handed off (its attempt ended and its node queued again at once, so another
pool starts it within seconds, not after its lease expires), and the worker goes on to Celery's
cold shutdown, which stops the calls. SIGQUIT and SIGKILL keep Celery's meaning.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery, signals
from celery.worker import state

from ..dag.engine import engine_for

#: Set once the worker was told to stop: it is no longer ready (``health.problem``).
DRAINING = threading.Event()

log = logging.getLogger(__name__)


def install(app: Celery, hostname: str, beat: Callable[[], None]) -> None:
    """Drain on SIGTERM; ``beat`` keeps the health file fresh meanwhile (the heartbeat stops first)."""

    def on_shutting_down(how: str = "", **kwargs: Any) -> None:
        if how == "Warm" and not DRAINING.is_set():
            DRAINING.set()
            threading.Thread(target=drain, args=(app, hostname, beat), name="coditect-drain", daemon=True).start()

    signals.worker_shutting_down.connect(on_shutting_down, weak=False, dispatch_uid="coditect-drain")


def drain(app: Celery, hostname: str, beat: Callable[[], None]) -> None:
    """Wait up to the grace for running calls, hand off the rest, then shut down cold."""
    deadline = time.monotonic() + app.settings.shutdown_grace
    while state.active_requests and time.monotonic() < deadline:
        beat()
        time.sleep(0.2)
    left = list(state.active_requests)
    if not left:
        return  # the warm shutdown ends by itself
    engine = engine_for(app.settings.state_url)
    for request in left:
        kwargs = request.kwargs or {}
        if kwargs.get("run_id") and kwargs.get("node_id"):
            try:
                if engine.hand_off(kwargs["run_id"], kwargs["node_id"], hostname, request.id):
                    log.warning("handed off %s of run %s: shutdown grace is over", kwargs["node_id"], kwargs["run_id"])
            except redis.RedisError as exc:
                log.warning("could not hand off %s (its lease will expire instead): %s", kwargs["node_id"], exc)
    os.kill(os.getpid(), signal.SIGQUIT)  # Celery's cold shutdown: stop the calls, exit
