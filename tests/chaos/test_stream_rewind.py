"""A node's streamed output across the death of its worker, on real processes: SIGKILL the pool
that runs a streaming node midway; its lease lapses, another pool runs the retry, and a reader
following the node all along sees the first attempt's chunks, a rewind, then the retry's chunks.
And an attempt that streams past ``CODITECT_STREAM_MAX_CHUNKS`` fails with the setting named."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from coditect_tasks import Client, Dag
from coditect_tasks.client.output import Chunk
from coditect_tasks.redis_server import RedisServer
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings
from tests.conftest import SUPPORT_MODULES, own_pools, wait_for


def test_a_killed_attempts_output_is_rewound_and_the_retry_streams_anew(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        base = Settings(home=tmp_path / "home", broker_url=server.url, log_level="WARNING")
        settings = dataclasses.replace(base, agent_modules=tuple(SUPPORT_MODULES.split(",")), stream_max_chunks=6)
        registry = Registry.from_url(settings.state_url)
        pools = own_pools(settings, ["streamer"], tmp_path)
        try:
            for pool in pools:
                pool.wait_ready(registry, timeout=60)
            gate = tmp_path / "gate"
            dag = Dag("rewound")
            dag.node("s", "streamer", params={"count": 5, "pause_after": 3, "gate": str(gate)})
            with Client(settings) as client:
                run = client.submit(dag)
                seen: list[Chunk] = []
                reader = threading.Thread(target=lambda: seen.extend(run.stream("s")), daemon=True)
                reader.start()
                wait_for(lambda: len(seen) == 3, 30, "the first attempt's three chunks to reach the reader")
                host = run.status()["nodes"]["s"]["worker"]
                victim = next(pool for pool in pools if pool.hostname == host)
                victim.kill(group=True)  # mid-stream, as a crash would
                assert run.wait(timeout=60) == "succeeded"
                reader.join(timeout=30)
                assert not reader.is_alive()
                assert [(c.attempt, c.rewind, c.data) for c in seen] == [
                    (1, False, 0),
                    (1, False, 1),
                    (1, False, 2),
                    (2, True, None),  # the retry begins its output over
                    *[(2, False, i) for i in range(5)],
                ]
                assert list(run.stream("s")) == seen  # a late reader reads the same

                too_much = Dag("chatty")
                too_much.node("s", "streamer", params={"count": 7})
                failed = client.submit(too_much)
                assert failed.wait(timeout=30) == "failed"
                error = failed.status()["nodes"]["s"]["error"]
                assert "streamed 6 chunks, the most CODITECT_STREAM_MAX_CHUNKS allows" in error
                assert [c.data for c in failed.stream("s")] == list(range(6))
        finally:
            for pool in pools:
                pool.stop()
            registry.client.close()
