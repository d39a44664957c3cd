"""The schedule endpoints: the same operations as ``coditect-tasks schedule`` (``Client.schedules``)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Path
from fastapi.responses import JSONResponse, Response

from ..client import Client
from ..dag.spec import Dag
from ..errors import ScheduleNotFoundError
from . import schemas
from .security import Guard

SCHEDULE = Path(description="The schedule's name.")
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": schemas.Error} for code in (401, 404, 422)}


def add_schedules(api: FastAPI, client: Client, guard: Guard) -> None:
    """Add the schedule endpoints to ``api``."""
    guarded = [Depends(guard.api)]

    @api.get("/api/schedules", dependencies=guarded, response_model=schemas.Schedules)
    def list_schedules() -> JSONResponse:
        """Every schedule with its next fire time and latest run."""
        return JSONResponse({"schedules": client.schedules.all()})

    @api.post(
        "/api/schedules", status_code=201, dependencies=guarded, response_model=schemas.ScheduleState, responses=ERRORS
    )
    def add_schedule(new: schemas.ScheduleNew) -> JSONResponse:
        """Add a schedule (422 if it cannot fire, or one of its name exists)."""
        dag = Dag.from_json(new.dag, source="request body")
        fields = new.model_dump(exclude={"name", "dag"})
        return JSONResponse(client.schedules.add(new.name, dag, **fields), status_code=201)

    @api.get("/api/schedules/{name}", dependencies=guarded, response_model=schemas.ScheduleState, responses=ERRORS)
    def get_schedule(name: str = SCHEDULE) -> JSONResponse:
        return JSONResponse(client.schedules.get(name))

    @api.post(
        "/api/schedules/{name}/pause", dependencies=guarded, response_model=schemas.ScheduleState, responses=ERRORS
    )
    def pause_schedule(name: str = SCHEDULE) -> JSONResponse:
        """No fire until resumed; the fire times in between are not made up."""
        return JSONResponse(client.schedules.pause(name))

    @api.post(
        "/api/schedules/{name}/resume", dependencies=guarded, response_model=schemas.ScheduleState, responses=ERRORS
    )
    def resume_schedule(name: str = SCHEDULE) -> JSONResponse:
        """Fire again, from the first fire time after now."""
        return JSONResponse(client.schedules.resume(name))

    @api.post("/api/schedules/{name}/trigger", dependencies=guarded, response_model=schemas.Triggered, responses=ERRORS)
    def trigger_schedule(name: str = SCHEDULE) -> JSONResponse:
        """Start a run now, whatever the overlap policy."""
        return JSONResponse({"run_id": client.schedules.trigger(name).id})

    @api.post(
        "/api/schedules/{name}/backfill", dependencies=guarded, response_model=schemas.Backfilled, responses=ERRORS
    )
    def backfill_schedule(span: schemas.Backfill, name: str = SCHEDULE) -> JSONResponse:
        """A run for each fire time in the span (one that had a run keeps it), oldest first."""
        return JSONResponse({"runs": client.schedules.backfill(name, span.start, span.end)})

    @api.delete("/api/schedules/{name}", status_code=204, dependencies=guarded, responses=ERRORS)
    def delete_schedule(name: str = SCHEDULE) -> Response:
        """Forget a schedule (its runs stay)."""
        if not client.schedules.delete(name):
            raise ScheduleNotFoundError(name)
        return Response(status_code=204)
