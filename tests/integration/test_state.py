"""Fenced shared state on a real Redis, and Kleppmann's scenario with a real paused process:
a lock holder stopped (SIGSTOP) past its lease wakes up after the next holder wrote, and its
write is refused."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from coditect_tasks import lock, state
from coditect_tasks.errors import LockTimeoutError, StaleFenceError
from coditect_tasks.settings import Settings
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

HOLDER = """
import sys, time
from pathlib import Path
from coditect_tasks import lock, state
from coditect_tasks.errors import StaleFenceError

go = Path(sys.argv[1])
with lock("deploy", ttl=1.0) as lease:
    print(lease.token, flush=True)
    while not go.exists():  # SIGSTOPped in here, past the lease
        time.sleep(0.01)
    try:
        state.put("deploy/version", "from the paused holder", fence=lease.token)
        print("written", flush=True)
    except StaleFenceError as exc:
        print(f"refused: {exc}", flush=True)
"""


def test_a_holder_paused_past_its_lease_cannot_overwrite_the_next_holders_write(
    settings: Settings, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    env = {**os.environ, **settings.environment(), "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen([sys.executable, "-c", HOLDER, str(go)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        first_token = int(first.stdout.readline())
        os.kill(first.pid, signal.SIGSTOP)  # a GC pause, a VM migration: it still believes it holds the lock
        with lock("deploy", ttl=30, wait=10, settings=settings) as second:  # free once the paused lease ran out
            assert second.token > first_token
            state.put("deploy/version", "from the second holder", fence=second.token, settings=settings)
            os.kill(first.pid, signal.SIGCONT)
            go.touch()
            output, _ = first.communicate(timeout=30)
            assert output.strip() == (
                f"refused: state 'deploy/version': refused a write with fencing token {first_token}; "
                f"token {second.token} has written there since"
            )
            assert second.held()  # the first holder's release on its way out did not free our lock
            assert state.get("deploy/version", settings=settings) == "from the second holder"
            with pytest.raises(StaleFenceError, match="no fencing token"):
                state.put("deploy/version", "unfenced", settings=settings)
            state.put("deploy/version", "again", fence=second.token, settings=settings)  # its own token still writes
        assert state.get("deploy/version", settings=settings) == "again"
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGCONT)
            first.kill()
            first.wait()


def test_a_held_lock_makes_others_wait_then_time_out(settings: Settings) -> None:
    with lock("build", ttl=5, settings=settings) as held:
        with pytest.raises(LockTimeoutError, match=re.escape("lock 'build' still held by another after 0.3 s")):
            lock("build", ttl=5, wait=0.3, settings=settings).acquire()
        assert held.renew(10)
    after = lock("build", ttl=5, wait=1, settings=settings).acquire()
    assert after.token == held.token + 1 and after.held()
    after.release()
    assert not after.held() and not after.release()
    assert state.get("never", "absent", settings=settings) == "absent"
    with pytest.raises(ValueError, match="a lock name"):
        lock("", ttl=1, settings=settings)
