"""``coditect-tasks serve`` on a real Redis with real worker pools, for the tests that meet it
over HTTP and in a browser (tests/integration/test_api.py, test_console.py): each module that
asks for ``served`` gets one of its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from coditect_tasks.embedded import WorkerProcess
from coditect_tasks.redis_server import RedisServer, free_port, stop_process, stop_processes
from coditect_tasks.registry import Registry
from coditect_tasks.settings import Settings
from tests.conftest import ROOT, SUPPORT_MODULES, missing, wait_for

TOKEN = "t0ken-for-tests"
FLOWER = "http://127.0.0.1:5555"
MAX_NODES = 40


@dataclass
class Served:
    settings: Settings
    env: dict[str, str]
    http: httpx.Client
    url: str
    registry: Registry

    def submit(self, doc: dict[str, Any]) -> dict[str, Any]:
        reply = self.http.post("/api/runs", json=doc)
        assert reply.status_code == 201, reply.text
        return dict(reply.json())

    def wait_end(self, run_id: str, timeout: float = 30) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def ended() -> bool:
            found.update(self.http.get(f"/api/runs/{run_id}").json())
            return found["status"] in ("succeeded", "failed", "cancelled")

        wait_for(ended, timeout, f"run {run_id} to end", interval=0.1)
        return found

    def events(self, run_id: str, last: str | None = None, seen: list[float] | None = None) -> list[dict[str, Any]]:
        """The whole event stream of a run, read to its end, as (id, data) dicts; ``seen`` gets
        the time each arrived."""
        headers = {"Last-Event-ID": last} if last else {}
        found, current = [], {}
        with self.http.stream("GET", f"/api/runs/{run_id}/events", headers=headers, timeout=30) as reply:
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/event-stream")
            for line in reply.iter_lines():
                if line.startswith("id:"):
                    current["id"] = line[3:].strip()
                elif line.startswith("data:"):
                    current["data"] = json.loads(line[5:])
                    if seen is not None:
                        seen.append(time.time())
                elif not line and "data" in current:
                    found.append(current)
                    current = {}
        return found


@pytest.fixture(scope="module")
def served(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``serve`` with a token, two worker pools of the test agents, on the session Redis."""
    home = tmp_path_factory.mktemp("serve")
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    settings = Settings(
        home=home / "home",
        broker_url=redis_server.url,
        log_level="WARNING",
        agent_modules=tuple(SUPPORT_MODULES.split(",")),
        max_nodes=MAX_NODES,
    )
    registry = Registry.from_url(settings.state_url)
    env = {**settings.environment(), "PYTHONPATH": str(ROOT)}
    workers = [
        WorkerProcess(settings, agents, concurrency=2, log_path=home / f"worker-{i}.log", extra_env=env).start()
        for i, agents in enumerate(
            (["echo", "sleep", "counted", "gated"], ["echo", "emit", "sleep", "waiter", "plan", "streamer"])
        )
    ]
    server_env = {**os.environ, **env, "CODITECT_API_TOKEN": TOKEN, "CODITECT_FLOWER_URL": FLOWER}
    log_path = home / "serve.log"
    server: subprocess.Popen[bytes] | None = None
    try:
        server, url = _serve(server_env, log_path)
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        for worker in workers:
            worker.wait_ready(registry, timeout=30)
        try:
            yield Served(settings, env, http, url, registry)
        finally:
            http.close()
    finally:
        if server is not None:
            stop_process(server, 10)
        stop_processes([worker.proc for worker in workers if worker.proc is not None], timeout=10)
        registry.client.close()


def _serve(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``serve`` on a free port, answering; another port if one drawn free was taken before it bound."""
    for _ in range(3):
        port, log = free_port(), log_path.open("ab")
        server = subprocess.Popen(
            [sys.executable, "-m", "coditect_tasks", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda s=server, u=url: s.poll() is not None or _answers(u), 30, "serve to answer")  # type: ignore[misc]
        if server.poll() is None:
            return server, url
        if "Address already in use" not in log_path.read_text():
            break
    raise AssertionError(log_path.read_text())


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/openapi.json", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def chromium() -> str:
    return shutil.which("chromium") or missing("Debian's chromium is not installed (apt-get install chromium)")
