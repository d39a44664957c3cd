"""The worker's probe file: liveness and readiness without asking the broker.

A probe that broadcasts ``inspect ping`` fails whenever the broker is slow and costs every
worker a reply; Kubernetes runs it every few seconds per pod. Instead the worker's heartbeat
thread rewrites one small JSON file each second (``CODITECT_HEALTH_FILE``) and
``coditect-tasks health`` reads it: alive while the file is fresh, ready while the worker is
also consuming and not shutting down.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

#: Seconds after which a heartbeat file no longer proves the worker alive.
MAX_AGE = 15.0


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
    if age > max_age:
        return f"worker {state.get('hostname')} last beat {age:.0f} s ago (over {max_age:g} s)"
    if ready and not state.get("ready"):
        return f"worker {state.get('hostname')} is shutting down: not taking work"
    return None
