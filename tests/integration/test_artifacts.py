"""Node results in S3 by reference, and fenced shared objects, against moto's S3 server run as a
real process on loopback, with real workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from botocore.exceptions import ClientError

from coditect_tasks import Dag, submit
from coditect_tasks.app import CoditectApp
from coditect_tasks.errors import ConfigError, StaleFenceError
from coditect_tasks.redis_server import free_port, stop_process
from coditect_tasks.settings import Settings
from coditect_tasks.state import artifacts
from tests.conftest import SUPPORT_ENV, WorkerFactory, wait_for

pytestmark = pytest.mark.integration
BUCKET = "coditect-artifacts"
MIB = 1024 * 1024


@dataclass
class S3:
    endpoint: str
    env: dict[str, str]
    client: Any


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[S3]:
    port = free_port()
    log = (tmp_path / "moto.log").open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    try:

        def answers() -> bool:
            assert server.poll() is None, (tmp_path / "moto.log").read_text()
            try:
                client.create_bucket(Bucket=BUCKET)
                return True
            except Exception:
                return False

        wait_for(answers, 30, "moto's S3 server")
        artifacts._STORES.clear()  # a store per endpoint: this test's
        yield S3(env["AWS_ENDPOINT_URL"], env, client)
    finally:
        stop_process(server, 10)
        log.close()
        artifacts._STORES.clear()


def test_a_large_result_goes_to_s3_and_downstream_gets_its_value(
    s3: S3, settings: Settings, test_app: CoditectApp, worker_factory: WorkerFactory
) -> None:
    url = f"s3://{BUCKET}/team-a"
    worker_factory(
        ["blob", "measure", "emit", "echo"], extra_env={**SUPPORT_ENV, **s3.env, "CODITECT_ARTIFACTS_URL": url}
    )
    client = redis.Redis.from_url(settings.state_url)
    size = 5 * MIB
    dag = Dag("big-result")
    dag.node("big", "blob", params={"bytes": size})
    dag.node("measure", "measure", after=["big"])
    # a value that only looks like a reference (another run's result) is passed on as it is, never fetched
    lookalike = {"artifact": f"{url}/runs/0123abcd/big/1/result.json", "bytes": 9}
    dag.node("lookalike", "emit", params={"value": lookalike})
    dag.node("sees", "echo", after=["lookalike"])
    before = int(client.info("memory")["used_memory"])
    sent = int(client.info("stats")["total_net_input_bytes"])
    run = submit(dag, test_app)
    assert run.wait(60) == "succeeded", run.status()
    grown = int(client.info("memory")["used_memory"]) - before
    passed = int(client.info("stats")["total_net_input_bytes"]) - sent  # everything written to Redis meanwhile
    doc = run.status()
    key = f"team-a/runs/{run.id}/big/1/result.json"
    assert doc["nodes"]["big"]["result"] == {"artifact": f"s3://{BUCKET}/{key}", "bytes": size + 2}
    assert doc["nodes"]["measure"]["result"]["lengths"] == {"big": size}  # the agent received the value
    assert doc["nodes"]["sees"]["result"]["upstream"] == {"lookalike": lookalike}
    note = doc["nodes"]["measure"]["result"]["note"]
    assert note == f"s3://{BUCKET}/team-a/runs/{run.id}/measure/1/files/notes.txt"
    body = s3.client.get_object(Bucket=BUCKET, Key=f"team-a/runs/{run.id}/measure/1/files/notes.txt")["Body"].read()
    assert body == f"measured {{'big': {size}}}".encode()
    stored = s3.client.head_object(Bucket=BUCKET, Key=key)
    assert stored["ContentLength"] == size + 2
    print(
        f"Redis used_memory grew {grown / 1024:.0f} KiB, {passed / 1024:.0f} KiB went in, for a {size // MIB} MiB result"
    )
    assert grown < MIB and passed < MIB  # the 5 MiB never went through Redis, not even for a moment
    client.close()


def test_fenced_shared_objects_refuse_older_tokens_and_attempt_files_are_never_overwritten(
    s3: S3, settings: Settings
) -> None:
    configured = replace(settings, artifacts_url=f"s3://{BUCKET}/shared-test")
    first = artifacts.put("deploy/manifest.json", "same bytes", fence=2, settings=configured)
    assert first.startswith(f"s3://{BUCKET}/shared-test/shared/deploy/manifest.json/{2:020d}-")
    with pytest.raises(StaleFenceError, match="fencing token 1; token 2 has written there since"):
        artifacts.put("deploy/manifest.json", "by token 1", fence=1, settings=configured)
    artifacts.put("deploy/manifest.json", "by token 3", fence=3, settings=configured)
    assert artifacts.get("deploy/manifest.json", settings=configured) == b"by token 3"
    # a paused holder of token 2 that passed its check before token 3 wrote, and writes now (the
    # same bytes as before, which an ETag compare could not tell apart): it lands below token 3
    store = artifacts.store_for(configured)
    assert store is not None
    store.put_new(f"shared/deploy/manifest.json/{2:020d}-{time.time_ns():020d}", b"same bytes")
    assert artifacts.get("deploy/manifest.json", settings=configured) == b"by token 3"
    assert artifacts.get("never/written", settings=configured) is None

    files = artifacts.NodeArtifacts(store, "run-1", "node", 1)
    files.put("log.txt", "first")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        files.put("log.txt", "second")  # a duplicate of the attempt cannot overwrite what it wrote
    for bad in ("../escape", "/abs", "a#b", ""):
        with pytest.raises(ValueError, match="an artifact name"):
            files.put(bad, "x")
    unset = artifacts.NodeArtifacts(None, "run-1", "node", 1)
    with pytest.raises(ConfigError, match="CODITECT_ARTIFACTS_URL: not set"):
        unset.put("log.txt", "x")
    assert os.environ["AWS_ENDPOINT_URL"] == s3.endpoint
