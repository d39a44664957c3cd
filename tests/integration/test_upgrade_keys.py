"""An upgrade from the key layout before the hash tag (``coditect:`` with no ``{0}``), on a real
Redis and a real worker: ``upgrade-keys`` refuses while a worker of the earlier release is live or
once this release has written keys, then moves a run waiting for an approval and an operator's
limit, and the run goes on to succeed.
The earlier layout is this one with its tag taken out: the one difference between the two."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coditect_tasks import Client, Dag, keys
from coditect_tasks.connection import close, redis_client
from coditect_tasks.embedded import WorkerProcess
from coditect_tasks.redis_server import RedisServer
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings

from ..conftest import ROOT, run_cli

pytestmark = pytest.mark.integration


def as_earlier_release(client: object, prefix: str = keys.PREFIX) -> int:
    """Rename every key of this layout to the earlier one; how many there were."""
    found = list(client.scan_iter(match=f"{prefix}*"))  # type: ignore[attr-defined]
    for key in found:
        client.rename(key, keys.UNTAGGED_PREFIX + key.removeprefix(prefix))  # type: ignore[attr-defined]
    return len(found)


def test_upgrade_keys_moves_a_waiting_run_and_a_limit_and_refuses_under_live_workers(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        settings = Settings(home=tmp_path / "home", broker_url=server.url, log_level="WARNING")
        env = {"CODITECT_BROKER_URL": server.url, "CODITECT_HOME": str(tmp_path / "home")}
        state = redis_client(server.url)
        dag = Dag("ship")
        dag.approval("ok")
        dag.node("after", "echo", after=["ok"])
        with Client(settings) as client:
            run = client.submit(dag)
            client.set_limit("model-calls", concurrency=3)
            assert run.status()["nodes"]["ok"]["status"] == "waiting"
        moved = as_earlier_release(state)
        assert moved > 5 and not list(state.scan_iter(match=f"{keys.PREFIX}*"))

        state.set("coditect:worker:echo-1@old-host", "{}", ex=30)  # a worker of the earlier release, live
        refused = run_cli(["upgrade-keys"], env)
        assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "echo-1@old-host" in refused.stderr and "stop every process of that release" in refused.stderr
        assert not list(state.scan_iter(match=f"{keys.PREFIX}*"))  # nothing moved
        state.delete("coditect:worker:echo-1@old-host")
        state.set(keys.REAPED_AT, "1")  # a process of this release ran already: its indexes lack the old runs
        early = run_cli(["upgrade-keys"], env)
        assert early.returncode == 1 and "this release has written keys already" in early.stderr, early.stderr
        assert (
            state.get(keys.UNTAGGED_PREFIX + "reaped_at") is None
            and len(list(state.scan_iter("coditect:*"))) == moved + 1
        )
        state.delete(keys.REAPED_AT)

        upgraded = run_cli(["upgrade-keys", "--json"], env)
        assert upgraded.returncode == 0, upgraded.stderr
        assert json.loads(upgraded.stdout) == {"renamed": moved, "kept": []}
        worker = WorkerProcess(settings, ["echo"], log_path=tmp_path / "w.log", extra_env={"PYTHONPATH": str(ROOT)})
        registry = Registry.from_url(settings.state_url)
        try:
            worker.start().wait_ready(registry, timeout=60)
            with Client(settings) as client:
                moved_run = client.get(run.id)
                assert moved_run.approve("ok", by="ana")["status"] == "succeeded"
                assert moved_run.wait(timeout=30) == "succeeded"
                assert client.limits("model-calls")[0]["definition"]["concurrency"] == 3
        finally:
            worker.stop()
            close(registry.client)
        again = run_cli(["upgrade-keys"], env)
        assert again.returncode == 0 and again.stdout.strip() == "renamed 0 key(s) of the earlier layout"
        close(state)
