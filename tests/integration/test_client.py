"""The orchestrator's clients on real processes: ``Client``, ``AsyncClient``, idempotent submit."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
import redis

from coditect_tasks import AsyncClient, Client, Dag, keys
from coditect_tasks.app import CoditectApp
from coditect_tasks.connection import MAX_CONNECTIONS
from coditect_tasks.errors import (
    IdempotencyConflictError,
    InvalidIdempotencyKeyError,
    RunFailedError,
    RunNotFoundError,
    RunTimeoutError,
)
from coditect_tasks.settings import Settings

from ..conftest import ROOT, SUPPORT_ENV, WorkerFactory, wait_for

pytestmark = pytest.mark.integration


def diamond(name: str = "diamond") -> Dag:
    dag = Dag(name)
    dag.node("a", "echo", params={"n": 1})
    dag.node("b", "echo", after=["a"])
    dag.node("c", "echo", after=["a"])
    dag.node("d", "echo", after=["b", "c"])
    return dag


async def _pattern_subscriptions(client: AsyncClient) -> int:
    """Pattern subscriptions on the state Redis, counted per connection: PUBSUB NUMPAT counts distinct
    patterns, so a subscriber already on the runs' pattern (a synchronous wait an earlier test of this
    process left listening on the same Redis) would hide this client's own."""
    return sum(int(entry["psub"]) for entry in await client.redis.client_list())


def _connections(settings: Settings) -> int:
    """This process's open TCP connections to the state Redis (the workers' are not ours)."""
    port = int(settings.state_url.rsplit(":", 1)[1].split("/")[0])
    return sum(1 for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == port)


def test_one_client_submits_reads_waits_follows_and_gives_its_connections_back(
    settings: Settings, worker_factory: WorkerFactory
) -> None:
    worker_factory(["echo", "fragile"], concurrency=2, extra_env=SUPPORT_ENV)
    before = _connections(settings)
    with Client(settings) as client:
        run = client.submit(diamond())
        results = run.result(timeout=30)
        assert set(results) == {"a", "b", "c", "d"}
        assert set(results["d"]["upstream"]) == {"b", "c"}
        assert client.get(run.id).status() == run.status()
        with pytest.raises(RunNotFoundError):
            client.get("no-such-run")
        events = list(run.events())
        assert (events[0].node, events[0].status) == (None, "running")
        assert (events[-1].node, events[-1].status) == (None, "succeeded") and events[-1].terminal
        assert [e.status for e in events if e.node == "d"] == ["queued", "running", "succeeded"]
        assert [e.id for e in events] == sorted({e.id for e in events}, key=lambda i: tuple(map(int, i.split("-"))))

        broken = Dag("broken")
        broken.node("ok", "echo")
        broken.node("bad", "fragile", after=["ok"])
        failing = client.submit(broken)
        with pytest.raises(RunFailedError) as failed:
            failing.result(timeout=30)
        assert failed.value.state == "failed"
        assert list(failed.value.failed) == ["bad"] and "fragile is down" in str(failed.value.failed["bad"])
        assert [r["run_id"] for r in client.runs(status="failed")] == [failing.id]
        assert [r["run_id"] for r in client.runs(limit=2)] == [failing.id, run.id]
        with pytest.raises(ValueError, match="not one of"):
            client.runs(status="exploded")
        assert _connections(settings) <= before + 10  # one bounded pool, whatever the calls
    wait_for(lambda: _connections(settings) <= before, 5, "the closed client's connections to go")


def test_module_level_submit_reuses_one_client_per_process(settings: Settings) -> None:
    script = """
import os, sys
import redis
import coditect_tasks
from coditect_tasks import Dag, client as c
dag = Dag("one-liner")
dag.node("a", "noop")
coditect_tasks.submit(dag)
probe = redis.Redis.from_url(os.environ["CODITECT_BROKER_URL"])
fds, clients = len(os.listdir("/proc/self/fd")), probe.info("clients")["connected_clients"]
ids = {coditect_tasks.submit(dag).id for _ in range(300)}
print(len(ids), len(os.listdir("/proc/self/fd")) - fds,
      probe.info("clients")["connected_clients"] - clients, c.default_client() is c.default_client())
"""
    env = {**os.environ, **settings.environment(), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    runs, fds, clients, same = done.stdout.split()
    assert int(runs) == 300
    assert int(fds) <= 5 and int(clients) <= 5, done.stdout
    assert same == "True"


def test_a_repeated_submit_with_a_key_returns_the_first_run_and_bad_keys_change_nothing(settings: Settings) -> None:
    with Client(settings) as client:
        first = client.submit(diamond(), idempotency_key="order-42")
        again = client.submit(diamond(), idempotency_key="order-42")
        assert again.id == first.id
        with pytest.raises(IdempotencyConflictError) as conflict:
            client.submit(diamond("another"), idempotency_key="order-42")
        assert conflict.value.run_id == first.id
        written = client.redis.zcard(keys.RUNS)
        for bad, problem in (("", "must not be empty"), ("k" * 257, "at most 256"), (42, "must be a string")):
            with pytest.raises(InvalidIdempotencyKeyError, match=problem):
                client.submit(diamond(), idempotency_key=bad)  # type: ignore[arg-type]
        assert client.redis.zcard(keys.RUNS) == written == 1
        assert client.redis.ttl(keys.idempotency("order-42")) > 24 * 3600 - 60


RACER = """
import sys
from coditect_tasks import Client, Dag
dag = Dag("raced")
dag.node("a", "noop")
with Client() as client:
    print("ready", flush=True)
    sys.stdin.readline()  # go
    for i in range(int(sys.argv[1])):
        print(f"key-{i}", client.submit(dag, idempotency_key=f"key-{i}").id, flush=True)
"""


def test_two_processes_racing_on_the_same_keys_make_one_run_per_key(settings: Settings) -> None:
    keys_count = 200
    env = {**os.environ, **settings.environment(), "PYTHONPATH": str(ROOT)}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(keys_count)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for racer in racers:
        assert racer.stdout is not None and racer.stdout.readline().strip() == "ready"
    for racer in racers:
        assert racer.stdin is not None
        racer.stdin.write("go\n")
        racer.stdin.flush()
    outputs = [dict(line.split() for line in racer.communicate(timeout=120)[0].splitlines()) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers)
    assert outputs[0] == outputs[1]  # both were told the same run for every key
    client = redis.Redis.from_url(settings.state_url, decode_responses=True)
    assert client.zcard(keys.RUNS) == keys_count
    assert set(client.zrange(keys.RUNS, 0, -1)) == set(outputs[0].values())


def test_an_orchestrator_killed_mid_submits_and_restarted_with_its_keys_makes_one_run_per_key(
    settings: Settings,
) -> None:
    env = {**os.environ, **settings.environment(), "PYTHONPATH": str(ROOT)}
    go = RACER.replace("sys.stdin.readline()", "pass")
    killed = subprocess.Popen([sys.executable, "-c", go, "40"], env=env, stdout=subprocess.PIPE, text=True)
    assert killed.stdout is not None
    lines = [killed.stdout.readline() for _ in range(11)][1:]  # ready, then 10 submits returned
    killed.send_signal(signal.SIGKILL)  # while it submits the next ones
    killed.wait()
    first = dict(line.split() for line in lines)
    restarted = subprocess.run([sys.executable, "-c", go, "40"], env=env, capture_output=True, text=True, timeout=60)
    again = dict(line.split() for line in restarted.stdout.splitlines()[1:])
    assert {key: again[key] for key in first} == first  # the ten it was told of: the same runs
    assert redis.Redis.from_url(settings.state_url).zcard(keys.RUNS) == 40  # and no key made two


def test_a_submit_refused_in_the_script_leaves_nothing_of_its_run(app: CoditectApp) -> None:
    """The race's losing side, made deterministic: the key is taken between the check and the write."""
    from coditect_tasks.observability import tracing
    from coditect_tasks.submitting.submitter import Lineage

    client = Client.of(app)
    dag = diamond()
    idem = client.core.submitter.idempotency(dag, "taken")
    assert idem is not None
    client.redis.set(idem.redis_key, f"winner {idem.digest}")
    with tracing.run_span(dag.name, len(dag.nodes)) as span:
        write = client.core.submitter.prepare(dag, [], span, Lineage(uuid.uuid4().hex), idem=idem)
    assert client._drive(client.core.submitter.write(write)) == "winner"
    assert client.redis.keys(keys.run_prefix(write.run_id) + "*") == []
    assert client.redis.zscore(keys.RUNS, write.run_id) is None
    assert client.redis.get(idem.redis_key) == f"winner {idem.digest}"
    client.redis.set(idem.redis_key, "winner another-digest")
    with pytest.raises(IdempotencyConflictError):
        client._drive(client.core.submitter.write(write))


def test_one_event_loop_awaits_two_hundred_runs_and_short_ones_return_while_long_ones_run(
    settings: Settings, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    worker_factory(["waiter"], concurrency=4, extra_env=SUPPORT_ENV)
    worker_factory(["echo", "fragile"], concurrency=2, extra_env=SUPPORT_ENV)
    gate = tmp_path / "gate"
    long_dag = Dag("long")
    long_dag.node("w", "waiter", params={"gate": str(gate)})

    baseline = _connections(settings)

    async def scenario() -> None:
        async with AsyncClient(settings) as client:
            longs = await asyncio.gather(*(client.submit(long_dag) for _ in range(4)))
            shorts = await asyncio.gather(*(client.submit(diamond()) for _ in range(196)))
            patterns = await _pattern_subscriptions(client)  # the workers' own (kombu's broadcasts)
            long_waits = [asyncio.create_task(run.wait(60)) for run in longs]
            started = time.monotonic()
            states = await asyncio.wait_for(asyncio.gather(*(run.wait(60) for run in shorts)), 60)
            print(f"196 short runs awaited at once: all back {time.monotonic() - started:.2f} s after the waits began")
            assert set(states) == {"succeeded"}
            assert not any(task.done() for task in long_waits)  # the long runs still run
            assert [await run.state() for run in longs] == ["running"] * 4
            assert await _pattern_subscriptions(client) == patterns + 1  # every wait on one subscription
            gate.touch()
            assert set(await asyncio.gather(*long_waits)) == {"succeeded"}
            assert _connections(settings) - baseline <= MAX_CONNECTIONS + 1  # the bounded pool and one subscription

            run = shorts[0]
            assert set(await run.result()) == {"a", "b", "c", "d"}
            assert (await run.status())["status"] == "succeeded"
            seen = [(e.node, e.status) async for e in run.events()]
            assert seen[0] == (None, "running") and seen[-1] == (None, "succeeded")
            assert (await client.get(run.id)).id == run.id
            with pytest.raises(RunNotFoundError):
                await client.get("no-such-run")

            broken = Dag("broken")
            broken.node("bad", "fragile")
            with pytest.raises(RunFailedError):
                await (await client.submit(broken)).result(30)
            gate.unlink()
            stuck = await client.submit(long_dag)
            with pytest.raises(RunTimeoutError):
                await stuck.result(0.2)
            assert await stuck.cancel()
            assert await stuck.wait(10) == "cancelled"
            gate.touch()  # its running node returns and is dropped
            again = await client.submit(diamond(), idempotency_key="async-key")
            assert (await client.submit(diamond(), idempotency_key="async-key")).id == again.id

    asyncio.run(scenario())
    assert _connections(settings) <= baseline


def test_a_submit_after_redis_lost_its_scripts_still_starts_the_run_once(settings: Settings) -> None:
    with Client(settings) as client:
        client.submit(diamond())  # the script is loaded now
        client.redis.script_flush()  # as a restarted Redis without them
        run = client.submit(diamond(), idempotency_key="after-flush")
        assert run.state() == "running"
        assert client.redis.hget(keys.run_prefix(run.id) + "status", "a") == "queued"
        assert client.redis.zcard(keys.RUNS) == 2

        async def again() -> str:
            async with AsyncClient(settings) as aclient:
                await aclient.redis.script_flush()
                return (await aclient.submit(diamond("async-after-flush"))).id

        started = asyncio.run(again())
        assert client.get(started).state() == "running"


def test_the_example_asyncio_service_submits_once_per_key_and_streams_a_runs_events(
    settings: Settings, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    import httpx

    from coditect_tasks.redis_server import free_port, stop_process

    worker_factory(["emit", "echo"], concurrency=2)
    port = free_port()
    env = {**os.environ, **settings.environment(), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "uvicorn", "examples.orchestrator_service:app", "--port", str(port)]
    with open(tmp_path / "service.log", "wb") as log:
        service = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{base}/openapi.json", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, 30, "the example service to listen")
        body, headers = {"files": ["api.py", "db.py"]}, {"idempotency-key": "pr-1234"}
        run_id = httpx.post(f"{base}/reviews", json=body, headers=headers).json()["run_id"]
        assert httpx.post(f"{base}/reviews", json=body, headers=headers).json()["run_id"] == run_id
        other = httpx.post(f"{base}/reviews", json={"files": ["x.py"]}, headers=headers)
        assert other.status_code == 422 and "different DAG" in other.json()["detail"]
        with httpx.stream("GET", f"{base}/reviews/{run_id}/events", timeout=30) as stream:
            kinds = [line.removeprefix("event: ") for line in stream.iter_lines() if line.startswith("event: ")]
        assert kinds[0] == "running" and kinds[-1] == "succeeded"
        assert kinds.count("succeeded") == 4  # plan, code, review, the run
        done = httpx.get(f"{base}/reviews/{run_id}", params={"wait": 10}).json()
        assert done["status"] == "succeeded"
        assert [item["params"]["item"] for item in done["results"]["code"]] == ["api.py", "db.py"]
        assert httpx.get(f"{base}/reviews/nope").status_code == 404
    finally:
        stop_process(service, 10)
