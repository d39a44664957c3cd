"""Streamed node output on real processes: a node streams 5,000 chunks through a real worker and
Redis; readers follow it live through ``serve``'s server-sent events (resuming with
``Last-Event-ID``), the sync client and the asyncio one, and each sees every chunk once, in order.
A retried attempt's rewind: tests/chaos/test_stream_rewind.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from coditect_tasks import AsyncClient, Client

from .conftest import TOKEN, Served, chromium

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("streaming")]  # one `serve` for the module
COUNT = 5000


def sse(served: Served, path: str, last: str | None = None, stop_after: int | None = None) -> list[dict[str, Any]]:
    """The chunks of one SSE connection, read to its end or until ``stop_after`` (then disconnected)."""
    headers = {"Last-Event-ID": last} if last else {}
    found: list[dict[str, Any]] = []
    with served.http.stream("GET", path, headers=headers, timeout=60) as reply:
        assert reply.status_code == 200, reply.read()
        event, ended = "", False
        for line in reply.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
                ended = ended or event == "end"
            elif line.startswith("data:") and event != "end":
                found.append(json.loads(line[5:]))
                if stop_after is not None and len(found) == stop_after:
                    break
            elif not line:
                event = ""
        assert stop_after is not None or ended, "the stream ended without its end event"
    return found


def test_five_thousand_chunks_reach_every_reader_once_in_order_across_reconnects(
    served: Served, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run = served.submit(
        {
            "name": "talkative",
            "nodes": [
                {
                    "id": "s",
                    "agent": "streamer",
                    "params": {"count": COUNT, "interval": 0.0002, "pause_after": 100, "gate": str(gate)},
                }
            ],
        }
    )
    path = f"/api/runs/{run['run_id']}/nodes/s/stream"
    first = sse(served, path, stop_after=60)  # live, while the node streams (it waits at 100)
    gate.touch()
    rest = sse(served, path, last=first[-1]["id"])  # a reconnect resumes after the last id seen
    chunks = first + rest
    assert [c["data"] for c in chunks] == list(range(COUNT))
    assert len({c["id"] for c in chunks}) == COUNT and all(c["attempt"] == 1 and not c["rewind"] for c in chunks)
    assert served.wait_end(run["run_id"])["status"] == "succeeded"
    ended = served.http.get(path, headers={"Last-Event-ID": chunks[-1]["id"]})
    assert ended.status_code == 204  # nothing left of a node that has ended: a browser stops reconnecting

    with Client(served.settings) as client:
        handle = client.get(run["run_id"])
        head = []
        for chunk in handle.stream("s"):
            head.append(chunk)
            if len(head) == 2500:
                break
        tail = list(handle.stream("s", after=head[-1].id))
        assert [c.data for c in head + tail] == list(range(COUNT))

    async def follow() -> list[Any]:
        async with AsyncClient(served.settings) as client:
            return [chunk.data async for chunk in (await client.get(run["run_id"])).stream("s")]

    assert asyncio.run(follow()) == list(range(COUNT))


def test_a_bad_stream_request_is_refused_before_it_starts(served: Served) -> None:
    run = served.submit({"name": "quiet", "nodes": [{"id": "e", "agent": "echo"}]})
    base = f"/api/runs/{run['run_id']}/nodes"
    for path, headers, status, problem in (
        (f"{base}/nope/stream", {}, 404, "has no node 'nope'"),
        ("/api/runs/unknown-run/nodes/e/stream", {}, 404, "no run 'unknown-run'"),
        (f"{base}/e/stream", {"Last-Event-ID": "soon"}, 422, "'soon' is not a chunk id"),
    ):
        reply = served.http.get(path, headers=headers)
        assert reply.status_code == status and problem in reply.json()["error"], reply.text
    assert served.wait_end(run["run_id"])["status"] == "succeeded"
    assert served.http.get(f"{base}/e/stream").status_code == 204  # it ended having streamed nothing
    assert httpx.get(served.url + f"{base}/e/stream").status_code == 401  # the token, as every endpoint


def test_the_run_page_shows_a_nodes_output_as_it_arrives(served: Served, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    gate = tmp_path / "gate"
    params = {"count": 40, "pause_after": 20, "gate": str(gate)}
    run = served.submit({"name": "shown", "nodes": [{"id": "s", "agent": "streamer", "params": params}]})
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{served.url}/runs/{run['run_id']}?token={TOKEN}")
            page.wait_for_selector('body[data-ready=true] [data-node="s"][data-status="running"]', state="attached")
            page.click('[data-node="s"] rect:last-of-type')
            output = page.locator("#output")
            expect(output).to_have_attribute("data-chunks", "20")  # live, while the node still runs
            gate.touch()
            expect(output).to_have_attribute("data-chunks", "40", timeout=10_000)
            expect(output.locator("pre")).to_have_text("".join(f"{i}\n" for i in range(40)))
            page.click('[data-node="s"] rect:last-of-type')  # opened again: the same output, once
            expect(output).to_have_attribute("data-chunks", "40")
            page.screenshot(path=str(tmp_path / "output.png"))
        finally:
            browser.close()
