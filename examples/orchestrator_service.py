"""An asyncio web service that submits DAGs and streams their events over one ``AsyncClient``.

The client is built once, for the service's lifetime (its connection pool and the one
subscription every wait shares), on the same ASGI stack as ``coditect-tasks serve``. A client
that retries a request with the same ``Idempotency-Key`` header gets the run it started before.

    coditect-tasks up &                       # or CODITECT_BROKER_URL=… for a cluster
    uvicorn examples.orchestrator_service:app --port 8800
    curl -s -X POST localhost:8800/reviews -H 'content-type: application/json' \\
         -H 'idempotency-key: pr-1234' -d '{"files": ["api.py", "db.py"]}'
    curl -sN localhost:8800/reviews/<run id>/events     # server-sent events until the run ends
    curl -s 'localhost:8800/reviews/<run id>?wait=30'   # the results once it has ended
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel
from sse_starlette.sse import EventSourceResponse

from coditect_tasks import AsyncClient, Dag
from coditect_tasks.errors import CoditectError, RunFailedError, RunNotFoundError, RunTimeoutError


class Review(BaseModel):
    files: list[str]


@asynccontextmanager
async def lifespan(service: FastAPI) -> AsyncIterator[None]:
    async with AsyncClient() as client:
        service.state.client = client
        yield


app = FastAPI(title="reviews", lifespan=lifespan)


def review_dag(files: list[str]) -> Dag:
    """One coder call per file (a foreach), then one reviewer over all of them."""
    dag = Dag("review")
    dag.node("plan", "emit", params={"value": files})
    dag.node("code", "echo", foreach="plan", after=["plan"])
    dag.node("review", "echo", params={"role": "reviewer"}, after=["code"])
    return dag


@app.post("/reviews", status_code=201)
async def start(review: Review, idempotency_key: str | None = Header(default=None)) -> dict[str, str]:
    try:
        run = await app.state.client.submit(review_dag(review.files), idempotency_key=idempotency_key)
    except CoditectError as exc:  # a bad key, a key used for another review
        raise HTTPException(status_code=422, detail=str(exc)) from None
    return {"run_id": run.id}


@app.get("/reviews/{run_id}")
async def result(run_id: str, wait: float = 0.0) -> dict[str, Any]:
    try:
        run = await app.state.client.get(run_id)
        return {"status": "succeeded", "results": await run.result(timeout=wait)}
    except RunNotFoundError:
        raise HTTPException(status_code=404, detail=f"no run {run_id}") from None
    except RunTimeoutError as exc:
        return {"status": exc.state}
    except RunFailedError as exc:
        return {"status": exc.state, "failed": exc.failed}


@app.get("/reviews/{run_id}/events")
async def events(run_id: str) -> EventSourceResponse:
    try:
        run = await app.state.client.get(run_id)
    except RunNotFoundError:
        raise HTTPException(status_code=404, detail=f"no run {run_id}") from None

    async def stream() -> AsyncIterator[dict[str, str]]:
        async for event in run.events():
            yield {"id": event.id, "event": event.status, "data": json.dumps(event.to_json())}

    return EventSourceResponse(stream())
