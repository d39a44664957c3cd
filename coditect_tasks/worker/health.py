"""The worker's probe file: liveness and readiness without asking the broker.

A probe that broadcasts ``inspect ping`` fails whenever the broker is slow and costs every
worker a reply; Kubernetes runs it every few seconds per pod. Instead a thread of the worker
process rewrites one small JSON file each second (``CODITECT_HEALTH_FILE``) and
``coditect-tasks health`` reads it: alive while the file is fresh, ready while the worker is
also consuming and not shutting down. The thread belongs to the process, not to the consumer:
Celery restarts its consumer when the broker connection drops, and a broker outage must make
the worker unready, never dead (a liveness failure would kill its running nodes).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

#: Seconds after which a heartbeat file no longer proves the worker alive.
MAX_AGE = 15.0
#: Seconds between rewrites of the file.
INTERVAL = 1.0

log = logging.getLogger(__name__)


class Beacon:
    """Rewrites the probe file every ``INTERVAL`` seconds while the process lives; ``ready``
    says whether the worker is consuming (set by the heartbeat step) and not draining."""

    def __init__(self) -> None:
        self.ready = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self, path: Path, hostname: str, draining: threading.Event) -> None:
        with self._lock:
            if self._thread is None:
                args = (path, hostname, draining)
                self._thread = threading.Thread(target=self._run, args=args, name="coditect-health", daemon=True)
                self._thread.start()

    def _run(self, path: Path, hostname: str, draining: threading.Event) -> None:
        while True:
            try:
                beat(path, hostname, self.ready and not draining.is_set())
            except OSError as exc:
                log.warning("could not write the health file %s: %s", path, exc)
            time.sleep(INTERVAL)


#: The one beacon of this worker process.
BEACON = Beacon()


def serve_probe(path: Path | None, role: str) -> None:
    """Beat ``path`` from a long-running service other than a worker (the recorder, the scheduler,
    ``serve``, the exporter, Flower), so the image's one HEALTHCHECK (``coditect-tasks health``)
    holds for every role: alive and ready while the process lives. Nothing without a path."""
    if path is not None:
        BEACON.ready = True
        BEACON.start(path, f"{role}@{socket.gethostname()}", threading.Event())


def beat(path: Path, hostname: str, ready: bool) -> None:
    """Rewrite the file atomically: a probe never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_text(json.dumps({"hostname": hostname, "pid": os.getpid(), "beat": time.time(), "ready": ready}))
    os.replace(scratch, path)


def problem(path: Path, ready: bool, max_age: float = MAX_AGE) -> str | None:
    """Why the worker that beats ``path`` is not alive (or not ready, if asked); None if it is."""
    try:
        state = json.loads(path.read_text())
        age = time.time() - float(state["beat"])
    except FileNotFoundError:
        return f"no heartbeat file at {path}: the worker has not started consuming"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable heartbeat file {path}: {exc}"
    if not 0 <= age <= max_age:  # also a beat from the future, or not a number
        return f"worker {state.get('hostname')} last beat {age:.0f} s ago (not within 0–{max_age:g} s)"
    if ready and state.get("ready") is not True:
        return f"worker {state.get('hostname')} is not taking work (starting, reconnecting or shutting down)"
    return None
