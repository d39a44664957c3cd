"""``exporter``, ``flower``, ``recorder``, ``scheduler`` and ``serve``: the long-running services
beside the workers."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Annotated

import typer

from ..errors import ConfigError
from ..settings import safe_url
from ..worker.health import serve_probe
from .context import emit_json, err, out, settings, stop_on_sigterm


def exporter(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve /metrics on.")] = 9808,
    address: Annotated[str, typer.Option(help="Address to listen on (loopback unless you say so).")] = "127.0.0.1",
) -> None:
    """Serve Prometheus metrics of runs, nodes, agents, queues and breakers until Ctrl-C."""
    from prometheus_client import CollectorRegistry, start_http_server

    from .. import broker
    from ..agents import load_agents
    from ..connection import redis_client
    from ..observability.metrics import PlatformCollector

    config = settings()
    broker.ping(config.state_url, config.connect_timeout)
    registry = CollectorRegistry()
    registry.register(
        PlatformCollector(
            redis_client(config.state_url),
            config.require_broker(),
            load_agents(config.agent_modules),
            cells=config.cells,
        )
    )
    stop_on_sigterm()
    try:
        server, _ = start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        raise ConfigError("--port", f"cannot listen on {address}:{port}: {exc.strerror}") from None
    serve_probe(config.health_file, "exporter")
    err.print(f"serving metrics on http://{address}:{port}/metrics")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()


def flower(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the Flower web UI.")] = 5555,
    address: Annotated[str, typer.Option(help="Address to listen on (loopback unless you say so).")] = "127.0.0.1",
) -> None:
    """Run Flower against the configured broker, behind basic auth from CODITECT_FLOWER_BASIC_AUTH."""
    from .. import broker
    from .. import flower as flower_mod
    from ..app import create_app

    os.environ["FLOWER_BASIC_AUTH"] = flower_mod.basic_auth()
    config = settings()
    broker.ping(config.require_broker(), config.connect_timeout)
    serve_probe(config.health_file, "flower")
    create_app(config).start(flower_mod.flower_argv(port, address))


def recorder() -> None:
    """Record run history from Redis into the database, in the foreground until SIGTERM."""
    from .. import broker
    from ..connection import redis_client
    from ..history.recorder import Recorder
    from ..history.store import HistoryStore
    from ..observability import logs

    config = settings()
    logs.configure_logging(config.log_level, file=logs.log_file())  # JSON lines (and over OTLP, if asked)
    broker.ping(config.state_url, config.connect_timeout)
    rec = Recorder(
        redis_client(config.state_url),
        HistoryStore.from_settings(config),
        retention=config.live_retention,
        cells=config.cells,
    )
    stop_on_sigterm()
    serve_probe(config.health_file, "recorder")
    err.print(f"recording history into {safe_url(config.history_url)}")
    try:
        rec.run_forever()
    except KeyboardInterrupt:
        rec.drain()


def scheduler() -> None:
    """Fire the schedules when due, in the foreground until SIGTERM; run as many as you like."""
    from .. import broker
    from ..client import Client
    from ..observability import logs
    from ..schedules.scheduler import Scheduler

    config = settings()
    logs.configure_logging(config.log_level, file=logs.log_file())  # JSON lines (and over OTLP, if asked)
    broker.ping(config.state_url, config.connect_timeout)
    stop_on_sigterm()
    serve_probe(config.health_file, "scheduler")
    with Client(config) as client:
        err.print("firing schedules (Ctrl-C stops)")
        with contextlib.suppress(KeyboardInterrupt):
            Scheduler(client).run_forever()


def serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the HTTP API and web pages.")] = 8700,
    address: Annotated[str, typer.Option(help="Address to listen on (beyond loopback: needs a token).")] = "127.0.0.1",
) -> None:
    """Serve the HTTP API (/openapi.json), run events (SSE) and live run pages until Ctrl-C.

    With CODITECT_API_TOKEN set, every request needs it (Authorization: Bearer, or ?token= on a page).
    """
    import socket

    import uvicorn

    from .. import broker
    from ..api.routes import create_api
    from ..api.security import check_bind

    config = settings()
    check_bind(address, config.api_token)
    broker.ping(config.state_url, config.connect_timeout)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it every response on a kept-alive connection waited 40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise ConfigError("--port", f"cannot listen on {address}:{port}: {exc.strerror}") from None
    server = uvicorn.Server(
        uvicorn.Config(create_api(config, address), log_level="warning", timeout_graceful_shutdown=3, access_log=False)
    )
    serve_probe(config.health_file, "serve")
    shown = f"[{address}]" if family == socket.AF_INET6 else address
    err.print(f"serving the API and run pages on http://{shown}:{sock.getsockname()[1]}/")
    server.run(sockets=[sock])


def upgrade_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Print what was renamed as JSON.")] = False,
) -> None:
    """Move an earlier release's live state into this release's keys (every process of it stopped)."""
    from .. import broker
    from ..connection import close, redis_client
    from ..migration import tag_keys

    config = settings()
    broker.ping(config.state_url, config.connect_timeout)
    client = redis_client(config.state_url)
    try:
        done = tag_keys(client)
    finally:
        close(client)
    if as_json:
        emit_json({"renamed": done.renamed, "kept": done.kept})
    else:
        out.print(f"renamed {done.renamed} key(s) of the earlier layout")
    if done.kept:
        err.print(
            f"{len(done.kept)} key(s) left as they were: this layout has them already ({', '.join(done.kept[:3])})"
        )
        raise typer.Exit(1)
