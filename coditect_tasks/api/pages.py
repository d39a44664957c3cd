"""The console's routes: its JSON (part of the HTTP API, in its OpenAPI schema) and its pages.

The pages are static HTML and a little JavaScript of our own (no CDN, no build step) that read
the JSON below and the run endpoints: the overview (``/``), the runs (``/runs``), one run
(``/runs/{run_id}``) and one agent (``/agents/{name}``)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, FastAPI, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from . import schemas
from .console import Console
from .security import Guard

AGENT = Path(description="An agent's name.")


def add_console(api: FastAPI, console: Console, guard: Guard, pages: dict[str, str]) -> None:
    """Add the console's endpoints and pages to ``api``."""

    @api.get("/api/overview", dependencies=[Depends(guard.api)], response_model=schemas.Overview)
    def get_overview() -> JSONResponse:
        """Agents with their workers, slots, queues and frontier; runs per status; runs and nodes
        ended per minute over the last hour; waiting nodes; the recorder's lag; limits in use."""
        return JSONResponse(console.overview())

    @api.get(
        "/api/agents/{name}",
        dependencies=[Depends(guard.api)],
        response_model=schemas.AgentPage,
        responses={404: {"model": schemas.Error}},
    )
    def get_agent(name: str = AGENT) -> JSONResponse:
        """One agent: its workers (host, pid, slots, last heartbeat), queue, frontier, breaker and
        fallback, and its latest recorded nodes with their times and errors."""
        found = console.agent(name)
        if found is None:
            return JSONResponse({"error": f"no agent {name!r}: none is declared or served"}, status_code=404)
        return JSONResponse(found)

    def page(name: str) -> Callable[[Request], Response]:
        def serve(request: Request) -> Response:
            return guard.page(request) or HTMLResponse(pages[name])

        return serve

    api.get("/", response_class=HTMLResponse, include_in_schema=False)(page("index.html"))
    api.get("/runs", response_class=HTMLResponse, include_in_schema=False)(page("runs.html"))
    api.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)(page("run.html"))
    api.get("/agents/{name}", response_class=HTMLResponse, include_in_schema=False)(page("agent.html"))
