"""Run state on a Redis that Sentinel watches, on real processes: a primary, two replicas and three
Sentinels on loopback ports, real workers, a real client. The platform runs through the one
``redis+sentinel://`` URL (state, broker and results), and a SIGKILL of the primary mid-load is an
outage, not a loss: every run whose submit was acknowledged succeeds. (The platform's other
behaviours on Sentinel, the CLI among them: tests/integration/test_sentinel_backend.py.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import redis

from coditect_tasks import Client
from coditect_tasks.errors import ReplicationError
from coditect_tasks.load.scenario import default_dag
from coditect_tasks.redis_server import SentinelGroup
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

from ..conftest import own_pools


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = SentinelGroup(tmp_path / "redis").start()
    yield group
    group.stop()


def test_a_sigkill_of_the_primary_mid_load_loses_no_acknowledged_run(
    sentinel_group: SentinelGroup, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home", broker_url=sentinel_group.url, log_level="WARNING")
    assert settings.min_replicas == 1  # on Sentinel, a submit counts once a replica has it
    registry = Registry.from_url(settings.state_url)
    workers = own_pools(settings, ["noop", "echo"], tmp_path)
    client = Client(settings)
    try:
        for worker in workers:
            worker.wait_ready(registry, timeout=60)
        acknowledged, refused, killed_at, promoted_at = [], 0, 0.0, 0.0
        started = time.monotonic()
        while time.monotonic() - started < 9:
            if not killed_at and len(acknowledged) >= 20:
                killed_at = time.time()
                sentinel_group.primary.kill()
            if killed_at and not promoted_at and sentinel_group.primary_port() != sentinel_group.primary.port:
                promoted_at = time.time()
            try:
                acknowledged.append(client.submit(default_dag(), idempotency_key=f"load-{len(acknowledged)}"))
            except (ReplicationError, redis.RedisError):
                refused += 1  # during the failover: the caller is told, and may submit again
            time.sleep(0.05)
        assert killed_at, "the load never reached the kill"
        states = [run.wait(timeout=90) for run in acknowledged]
        assert states == ["succeeded"] * len(acknowledged)
        promoted = sentinel_group.primary_port()
        assert promoted is not None and promoted != sentinel_group.primary.port
        after = [
            run for run in acknowledged if datetime.fromisoformat(run.status()["submitted_at"]).timestamp() > killed_at
        ]
        assert after, "no run was acknowledged after the kill"
        first = min(
            datetime.fromisoformat(node["started_at"]).timestamp()
            for run in after
            for node in run.status()["nodes"].values()
            if node["started_at"]
        )
        print(
            f"Sentinel failover: {len(acknowledged)} runs acknowledged ({len(after)} after the kill, {refused} refused "
            f"during it), all succeeded; the replica was promoted {promoted_at - killed_at:.1f} s after the kill, and "
            f"the first node after it ran {first - killed_at:.1f} s after it"
        )
        assert first - killed_at < 15
        assert all(w.alive() for w in workers)  # no worker restarted by hand
    finally:
        client.close()
        for worker in workers:
            worker.stop()
        registry.client.close()
