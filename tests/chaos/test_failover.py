"""Run state on a Redis that replicates, on real processes, and a SIGKILL of its primary mid-load:
an outage, not a loss. Every run whose submit was acknowledged succeeds. Two deployments: a primary,
two replicas and three Sentinels, the platform running through the one ``redis+sentinel://`` URL
(state, broker and results); and a Redis Cluster of three primaries with a replica each, the broker
a Redis of its own, the primary killed the one that holds the platform's slot. (The platform's
other behaviours on both, the CLI among them: tests/integration/test_replicated_backends.py.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import redis

from coditect_tasks import Client, keys
from coditect_tasks.errors import ReplicationError
from coditect_tasks.load.scenario import default_dag
from coditect_tasks.redis_cluster import ClusterGroup
from coditect_tasks.redis_server import RedisServer, SentinelGroup
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

from ..conftest import own_pools


@dataclass
class Replicated:
    """A Redis that fails over, as the test acts on it."""

    settings: Settings
    sentinels: SentinelGroup | None = None
    cluster: ClusterGroup | None = None

    def primary(self) -> RedisServer:
        """The server that holds the platform's keys now."""
        if self.sentinels is not None:
            port = self.sentinels.primary_port()
            return self.sentinels.server_on(port) if port else self.sentinels.primary
        assert self.cluster is not None
        return self.cluster.primary_of(keys.ROUTE)

    def cells_on(self, server: RedisServer) -> set[int]:
        """The cells whose keys ``server`` held (all of them, on one Redis)."""
        if self.cluster is None:
            return set(range(self.settings.cells))
        return {c for c in range(self.settings.cells) if self.cluster.primary_of(keys.route(c)) is server}


@pytest.fixture(params=["sentinel", "cluster"])
def replicated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Replicated]:
    home = tmp_path / "home"
    if request.param == "sentinel":
        group = SentinelGroup(tmp_path / "redis").start()
        yield Replicated(Settings(home=home, broker_url=group.url, log_level="WARNING"), sentinels=group)
        group.stop()
        return
    cluster = ClusterGroup(tmp_path / "cluster", replicas=2).start()  # a promoted replica keeps one
    broker = RedisServer(tmp_path / "broker").start()
    try:
        settings = Settings(home=home, broker_url=broker.url, redis_url=cluster.url, log_level="WARNING")
        yield Replicated(settings, cluster=cluster)
    finally:
        broker.stop()
        cluster.stop()


def test_a_sigkill_of_the_primary_mid_load_loses_no_acknowledged_run(replicated: Replicated, tmp_path: Path) -> None:
    settings = replicated.settings
    assert settings.min_replicas == 1  # a submit counts once a replica has it
    registry = Registry.from_url(settings.state_url)
    workers = own_pools(settings, ["noop", "echo"], tmp_path)
    client = Client(settings)
    try:
        for worker in workers:
            worker.wait_ready(registry, timeout=60)
        acknowledged, refused, killed_at, promoted_at = [], 0, 0.0, 0.0
        killed = replicated.primary()
        failed_cells = replicated.cells_on(killed)  # the runs that wait for the failover
        started = time.monotonic()
        while time.monotonic() - started < 7:
            if not killed_at and len(acknowledged) >= 20:
                killed_at = time.time()
                killed.kill()
            if killed_at and not promoted_at and replicated.primary() is not killed:
                promoted_at = time.time()
            try:
                acknowledged.append(client.submit(default_dag(), idempotency_key=f"load-{len(acknowledged)}"))
            except (ReplicationError, redis.RedisError):
                refused += 1  # during the failover: the caller is told, and may submit again
            time.sleep(0.05)
        assert killed_at, "the load never reached the kill"
        states = [run.wait(timeout=90) for run in acknowledged]
        errors = {
            run.id: {n: node["error"] for n, node in run.status()["nodes"].items() if node["error"]}
            for run, state in zip(acknowledged, states, strict=True)
            if state != "succeeded"
        }
        assert states == ["succeeded"] * len(acknowledged), errors
        assert replicated.primary() is not killed
        after = [
            run
            for run in acknowledged
            if keys.cell_of(run.id) in failed_cells
            and datetime.fromisoformat(run.status()["submitted_at"]).timestamp() > killed_at
        ]
        assert after, "no run of the failed primary's cells was acknowledged after the kill"
        twice = sum(1 for run in acknowledged for node in run.status()["nodes"].values() if node["attempts"] > 1)
        first = min(
            datetime.fromisoformat(node["started_at"]).timestamp()
            for run in after
            for node in run.status()["nodes"].values()
            if node["started_at"]
        )
        print(
            f"failover: {len(acknowledged)} runs acknowledged ({len(after)} on the failed primary's cells after the "
            f"kill, {refused} refused during it), all succeeded, {twice} node(s) ran twice; the replica was promoted "
            f"{promoted_at - killed_at:.1f} s after the kill, and the first node after it ran {first - killed_at:.1f} s "
            "after it"
        )
        assert first - killed_at < 15
        assert all(w.alive() for w in workers)  # no worker restarted by hand
    finally:
        client.close()
        for worker in workers:
            worker.stop()
        registry.client.close()
