"""The HTTP face of the platform (``coditect-tasks serve``): the same operations as the CLI and the
Python API, over the same functions, for services in any language and for people in a browser.

Handlers that touch Redis or the database are plain functions (FastAPI runs them in its thread
pool); only the event stream is a coroutine, so an open stream holds a socket, not a thread.
"""

from __future__ import annotations

import contextlib
import html
import json
from collections.abc import AsyncIterator
from importlib import metadata, resources
from typing import Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..client import AsyncClient, AsyncRun, Client, DagRun
from ..client.output import ENDED, has_output, node_state, valid_id
from ..dag.spec import Dag
from ..engine.events import order
from ..errors import (
    BrokerUnreachableError,
    CoditectError,
    ConfigError,
    DagError,
    InvalidArgumentError,
    RunNotFoundError,
    RunStateError,
    ScheduleNotFoundError,
    UnknownAgentError,
)
from ..history.queries import RunQuery
from ..settings import Settings
from ..status import TERMINAL
from . import schemas
from .console import Console
from .pages import add_console
from .schedules import add_schedules
from .security import Gate, Guard

#: Media types ``POST /api/runs`` reads, and the suffix that makes ``Dag.from_text`` parse them as such.
DAG_MEDIA = {
    "application/json": "request.json",
    "application/yaml": "request.yaml",
    "application/x-yaml": "request.yaml",
    "text/yaml": "request.yaml",
}
#: HTTP status of each error a request can meet (the first class that matches).
STATUS_OF: tuple[tuple[type[CoditectError], int], ...] = (
    (RunNotFoundError, 404),
    (ScheduleNotFoundError, 404),
    (RunStateError, 409),
    (DagError, 422),
    (UnknownAgentError, 422),
    (InvalidArgumentError, 422),
    (BrokerUnreachableError, 503),
    (ConfigError, 400),
)
STATIC = resources.files("coditect_tasks.api") / "static"
#: Event streams open at once at most (each holds a Redis connection); more wait for one to end.
MAX_STREAMS = 1000


#: The path parameter of every run endpoint.
RUN_ID = Path(description="A run id, as submit returned it.")
NODE = Path(description="A node id of the run.")


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": schemas.Error} for code in codes}


def create_api(settings: Settings, address: str = "127.0.0.1") -> FastAPI:
    """The ASGI application over ``settings`` for a server listening on ``address``: one client
    for the handlers (run in FastAPI's thread pool) and one asyncio client for the event streams."""
    client = Client(settings)
    # every open event stream holds one connection (its subscription): the next waits, never fails
    streams = AsyncClient(settings, max_connections=MAX_STREAMS, pool_timeout=None, history=client.history())
    guard = Guard(settings.api_token, address)
    console = Console(client)
    pages = _pages(settings)

    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        yield
        await streams.aclose()
        client.close()

    api = FastAPI(
        title="coditect-tasks",
        version=metadata.version("coditect-tasks"),
        description="Submit, watch, cancel and retry DAG runs of agents on Celery.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's docs pages load their scripts from a CDN: /openapi.json is the schema
        redoc_url=None,
    )
    api.add_middleware(Gate, guard=guard)

    @api.exception_handler(CoditectError)
    async def coditect_error(request: Request, exc: CoditectError) -> JSONResponse:
        status = next((code for kind, code in STATUS_OF if isinstance(exc, kind)), 400)
        return JSONResponse({"error": str(exc)}, status_code=status)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @api.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": problems}, status_code=422)

    def run_of(run_id: str) -> DagRun:
        return DagRun(run_id, client)

    @api.post(
        "/api/runs",
        status_code=201,
        dependencies=[Depends(guard.api)],
        response_model=schemas.RunDocument,
        responses=_errors(401, 415, 422),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": schemas.DagDocument.model_json_schema()},
                    "application/yaml": {"schema": {"type": "string", "description": "The same document in YAML."}},
                },
            }
        },
    )
    def create_run(
        body: bytes = Depends(_body),
        content_type: str | None = Header(None, description="application/json or application/yaml."),
        priority: int | None = Query(None, ge=0, le=9, description="0-9, higher first while workers are busy."),
        fairness_key: str | None = Query(
            None, min_length=1, max_length=256, description="A tenant or user: served round robin with the others."
        ),
    ) -> JSONResponse:
        """Validate a DAG and start it; 422 names what is wrong (nothing is enqueued then)."""
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media not in DAG_MEDIA:
            return JSONResponse({"error": f"Content-Type {media!r} is not one of {', '.join(DAG_MEDIA)}"}, 415)
        if len(body) > settings.max_dag_bytes:
            raise DagError("request body", f"{len(body)} bytes, over the limit of {settings.max_dag_bytes}")
        try:
            text = body.decode()
        except UnicodeDecodeError as exc:
            raise DagError("request body", f"not UTF-8: {exc}") from None
        dag = Dag.from_text(text, source=DAG_MEDIA[media], max_bytes=settings.max_dag_bytes)
        run = client.submit(dag, priority=priority, fairness_key=fairness_key)
        return JSONResponse(run.status(), status_code=201)

    @api.get("/api/runs", dependencies=[Depends(guard.api)], response_model=schemas.RunList, responses=_errors(401))
    def get_runs(
        limit: int = Query(20, ge=1, le=500, description="Runs per page."),
        before: str | None = Query(None, description="A run id: older runs."),
        status: str | None = Query(None, description="Only runs in this state: running, succeeded, failed, cancelled."),
        name: str | None = Query(None, description="Only runs of this name."),
        search: str | None = Query(None, description="Only runs whose id starts with it or whose name holds it."),
        since: str | None = Query(None, description="Only runs submitted at or after this ISO-8601 time."),
        until: str | None = Query(None, description="Only runs submitted before this ISO-8601 time."),
    ) -> JSONResponse:
        """Recent runs, newest first, filtered; pass the last ``run_id`` as ``before`` for the next
        page. ``counts``: the filter's runs per status (from the history)."""
        query = RunQuery(status, name, search or None, since, until)
        runs = client.runs(
            limit=limit, before=before, status=status, name=name, search=search or None, since=since, until=until
        )
        return JSONResponse({"runs": runs, "counts": console.counts(query)})

    @api.get(
        "/api/runs/{run_id}",
        dependencies=[Depends(guard.api)],
        response_model=schemas.RunDocument,
        responses=_errors(401, 404),
    )
    def get_run(run_id: str = RUN_ID) -> JSONResponse:
        """The run document, from the live state or, after retention, from the history."""
        return JSONResponse(run_of(run_id).status())

    @api.get("/api/runs/{run_id}/dag", dependencies=[Depends(guard.api)], response_model=schemas.DagDocument)
    def get_dag(run_id: str = RUN_ID) -> JSONResponse:
        """The DAG as submitted."""
        return JSONResponse(run_of(run_id).definition())

    @api.post(
        "/api/runs/{run_id}/cancel",
        dependencies=[Depends(guard.api)],
        response_model=schemas.RunDocument,
        responses=_errors(401, 404, 409),
    )
    def cancel_run(run_id: str = RUN_ID) -> JSONResponse:
        """Start nothing more, revoke what is queued; the run ends cancelled (409 if it had ended)."""
        run = run_of(run_id)
        if not run.cancel():
            raise RunStateError(run_id, f"is {run.state()}; nothing to cancel")
        return JSONResponse(run.status())

    @api.post(
        "/api/runs/{run_id}/retry",
        status_code=201,
        dependencies=[Depends(guard.api)],
        response_model=schemas.RunDocument,
        responses=_errors(401, 404, 409, 422),
    )
    def retry_run(run_id: str = RUN_ID) -> JSONResponse:
        """A new run (``parent_run_id``) that keeps the nodes that succeeded and runs the rest again."""
        return JSONResponse(run_of(run_id).retry().status(), status_code=201)

    @api.get(
        "/api/runs/{run_id}/events",
        dependencies=[Depends(guard.api)],
        response_class=EventSourceResponse,
        responses={
            200: {
                "description": "Server-sent events; each `data` is a Transition, ending after the run's last.",
                "content": {"text/event-stream": {"schema": schemas.Transition.model_json_schema()}},
            },
            **_errors(401, 404),
        },
    )
    def run_events(
        run_id: str = RUN_ID,
        last_event_id: str | None = Header(None, description="The last event id seen: the stream resumes after it."),
    ) -> Response:
        """Every transition of the run in order, from its start (or after ``Last-Event-ID``), live.
        204 for a reconnect after the run's last event: that tells a browser to stop reconnecting."""
        state = run_of(run_id).state()  # RunNotFoundError (404) before the stream starts
        if last_event_id is not None:
            try:
                after = order(last_event_id)
            except ValueError:
                return JSONResponse({"error": f"Last-Event-ID {last_event_id!r} is not an event id"}, 422)
            if state in TERMINAL:
                last = run_of(run_id).terminal_event()
                if last is None or after >= order(last):
                    return Response(status_code=204)
        return EventSourceResponse(_sse(streams, run_id, last_event_id), ping=15)

    @api.get(
        "/api/runs/{run_id}/nodes/{node}/stream",
        dependencies=[Depends(guard.api)],
        response_class=EventSourceResponse,
        responses={
            200: {
                "description": "Server-sent events; each `data` is a Chunk, ending once the node has ended.",
                "content": {"text/event-stream": {"schema": schemas.Chunk.model_json_schema()}},
            },
            **_errors(401, 404, 422),
        },
    )
    def node_stream(
        run_id: str = RUN_ID,
        node: str = NODE,
        last_event_id: str | None = Header(None, description="The last chunk id seen: the stream resumes after it."),
    ) -> Response:
        """What the node streams (``call.stream``), from its start (or after ``Last-Event-ID``), live
        until it ends, then an ``end`` event; a chunk with ``rewind`` begins a retried attempt's
        output over. 204 when the node has ended and there is nothing (more) to read."""
        run = run_of(run_id)
        if last_event_id is not None and not valid_id(last_event_id):
            return JSONResponse({"error": f"Last-Event-ID {last_event_id!r} is not a chunk id"}, 422)
        run.state()  # RunNotFoundError (404) before the stream starts
        status, live = node_state(client.redis, run_id, node)
        if status is None:
            gone = (
                f"run {run_id}'s output left Redis with its live state"
                if not live
                else f"run {run_id} has no node {node!r}"
            )
            return JSONResponse({"error": gone}, 404)
        if status in ENDED and not has_output(client.redis, run_id, node, last_event_id):
            return Response(status_code=204)  # nothing (more) of a node that has ended: a browser stops asking
        return EventSourceResponse(_chunks(streams, run_id, node, last_event_id), ping=15)

    @api.get("/api/agents", dependencies=[Depends(guard.api)], response_model=schemas.Agents)
    def get_agents() -> JSONResponse:
        """Agents with their live workers, queue depths and breakers."""
        return JSONResponse(client.agents())

    @api.put(
        "/api/agents/{name}/ramp",
        dependencies=[Depends(guard.api)],
        response_model=schemas.RampState,
        responses=_errors(401, 422),
    )
    def ramp_agent(change: schemas.RampChange, name: str = Path(description="The agent's name.")) -> JSONResponse:
        """Pin ``percent`` of the agent's new runs to version ``to``; each run keeps its versions."""
        return JSONResponse(client.ramp(name, to=change.to, percent=change.percent, base=change.base))

    @api.post(
        "/api/agents/{name}/rollback",
        dependencies=[Depends(guard.api)],
        response_model=schemas.RampState,
        responses=_errors(401, 422),
    )
    def rollback_agent(name: str = Path(description="The agent's name.")) -> JSONResponse:
        """New runs on the base version again; runs already pinned finish on theirs."""
        return JSONResponse(client.rollback(name))

    @api.post("/api/events", dependencies=[Depends(guard.api)], response_model=schemas.EventResolved)
    def send_event(event: schemas.EventSent) -> JSONResponse:
        """Send an event: every node waiting for its name and key succeeds with its data; a wait that
        begins later within its lookback still takes it."""
        return JSONResponse({"resolved": client.send_event(event.name, key=event.key, data=event.data)})

    @api.post(
        "/api/runs/{run_id}/nodes/{node}/approve",
        dependencies=[Depends(guard.api)],
        response_model=schemas.DecisionTaken,
        responses=_errors(401, 404, 409, 422),
    )
    def approve(decision: schemas.Decision, run_id: str = RUN_ID, node: str = NODE) -> JSONResponse:
        """Approve or reject a waiting approval node (409 if it is not one that waits)."""
        run = run_of(run_id)
        run.state()  # RunNotFoundError (404) for an unknown run
        return JSONResponse(run.approve(node, by=decision.by, comment=decision.comment, reject=decision.reject))

    @api.get("/api/limits", dependencies=[Depends(guard.api)], response_model=schemas.Limits)
    def get_limits() -> JSONResponse:
        """Every limit and, per key, the nodes holding it, waiting for it and the units of its window."""
        return JSONResponse({"limits": client.limits()})

    @api.put(
        "/api/limits/{name}",
        dependencies=[Depends(guard.api)],
        response_model=schemas.LimitDefinition,
        responses=_errors(401, 422),
    )
    def set_limit(name: str, change: schemas.LimitChange) -> JSONResponse:
        """Change a limit now (define it, if no code does): it holds from the next dispatch on."""
        defined = client.set_limit(name, **change.model_dump())
        return JSONResponse({"name": name, "definition": defined})

    @api.delete(
        "/api/limits/{name}",
        dependencies=[Depends(guard.api)],
        response_model=schemas.LimitDefinition,
        responses=_errors(401),
    )
    def unset_limit(name: str) -> JSONResponse:
        """Drop an operator's change: the declared definition holds again (null: the limit is gone)."""
        return JSONResponse({"name": name, "definition": client.unset_limit(name)})

    add_console(api, console, guard, pages)
    add_schedules(api, client, guard)

    api.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return api


async def _body(request: Request) -> bytes:
    return await request.body()


async def _sse(client: AsyncClient, run_id: str, after: str | None) -> AsyncIterator[dict[str, str]]:
    async for event in AsyncRun(run_id, client).events(after):
        yield {"id": event.id, "data": json.dumps(event.to_json(), separators=(",", ":"))}


async def _chunks(client: AsyncClient, run_id: str, node: str, after: str | None) -> AsyncIterator[dict[str, str]]:
    async for chunk in AsyncRun(run_id, client).stream(node, after):
        yield {"id": chunk.id, "data": json.dumps(chunk.to_json(), separators=(",", ":"))}
    yield {"event": "end", "data": ""}  # the node has ended and all it streamed is sent


def _pages(settings: Settings) -> dict[str, str]:
    """The pages, read once, with the Flower address filled in."""
    flower = html.escape(settings.flower_url or "", quote=True)
    return {
        page.name: page.read_text().replace("@@FLOWER_URL@@", flower)
        for page in STATIC.iterdir()
        if page.name.endswith(".html")
    }
