"""The console as an operator keeps it open: the overview, the runs and an agent's page of a real
``serve`` over a real Redis and real workers, in a real browser (Debian's chromium through
Playwright), live without a reload; and the JSON they read, through the HTTP API."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from coditect_tasks.embedded import WorkerProcess
from coditect_tasks.history.recorder import Recorder
from coditect_tasks.history.store import HistoryStore
from tests.conftest import ROOT, SUPPORT_ENV

from .conftest import TOKEN, Served, chromium

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("console")]  # one `serve` for the module


def record(served: Served) -> None:
    """What the recorder process does beside a deployment: the history the pages count from."""
    Recorder(served.registry.client, HistoryStore.from_settings(served.settings), retention=600).drain()


def failing(served: Served, tmp_path: Path, name: str = "doomed") -> dict[str, Any]:
    params = {"log": str(tmp_path / f"{name}.log"), "gate": str(tmp_path / "closed")}
    return served.submit({"name": name, "nodes": [{"id": "only", "agent": "gated", "params": params}]})


def test_the_runs_api_filters_searches_pages_and_counts(served: Served, tmp_path: Path) -> None:
    ok = [served.submit({"name": "filtered-ok", "nodes": [{"id": "a", "agent": "echo"}]}) for _ in range(3)]
    bad = failing(served, tmp_path, "filtered-bad")
    for run in (*ok, bad):
        served.wait_end(run["run_id"])
    stuck = served.submit({"name": "stuck", "nodes": [{"id": "n", "agent": "noop"}]})  # no worker serves noop
    record(served)
    failed = served.http.get("/api/runs", params={"status": "failed", "search": "filtered"}).json()
    assert [r["run_id"] for r in failed["runs"]] == [bad["run_id"]]
    assert failed["counts"]["failed"] >= 1 and failed["counts"]["succeeded"] == 3  # counts ignore the status
    named = served.http.get("/api/runs", params={"name": "filtered-ok", "limit": 2}).json()
    assert [r["run_id"] for r in named["runs"]] == [r["run_id"] for r in reversed(ok)][:2]
    older = served.http.get("/api/runs", params={"name": "filtered-ok", "before": named["runs"][-1]["run_id"]}).json()
    assert [r["run_id"] for r in older["runs"]] == [ok[0]["run_id"]]
    by_id = served.http.get("/api/runs", params={"search": bad["run_id"][:10]}).json()
    assert [r["run_id"] for r in by_id["runs"]] == [bad["run_id"]]
    future = served.http.get("/api/runs", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert future["runs"] == [] and sum(future["counts"].values()) == 0
    for params, problem in (({"status": "lost"}, "status 'lost' is not one of"), ({"since": "soon"}, "since 'soon'")):
        reply = served.http.get("/api/runs", params=params)
        assert reply.status_code == 422 and problem in reply.json()["error"]
    overview = served.http.get("/api/overview").json()
    assert overview["runs"]["failed"] >= 1
    minutes = overview["throughput"]["runs"]
    assert len(minutes) == 60 and sum(m["failed"] for m in minutes) >= 1 and sum(m["succeeded"] for m in minutes) >= 3
    assert overview["agents"]["echo"]["slots"] == 4 and len(overview["agents"]["echo"]["workers"]) == 2
    waited = datetime.fromisoformat(overview["agents"]["noop"]["oldest_queued"])
    assert abs(waited - datetime.fromisoformat(stuck["submitted_at"])) < timedelta(seconds=2)
    assert overview["agents"]["echo"]["oldest_queued"] is None  # nothing of echo waits
    assert served.http.post(f"/api/runs/{stuck['run_id']}/cancel").status_code == 200
    agent = served.http.get("/api/agents/gated").json()
    assert agent["nodes"][0]["status"] == "failed" and "the gate is closed" in agent["nodes"][0]["error"]
    assert [w["concurrency"] for w in agent["workers"]] == [2] and agent["workers"][0]["pid"] > 0
    unknown = served.http.get("/api/agents/nobody")
    assert unknown.status_code == 404 and "no agent 'nobody'" in unknown.json()["error"]


def test_the_ramp_api_ramps_and_rolls_back_an_agent(served: Served) -> None:
    ramped = served.http.put("/api/agents/echo/ramp", json={"to": "2", "percent": 10})
    assert ramped.status_code == 200 and ramped.json() == {"agent": "echo", "base": None, "to": "2", "percent": 10}
    assert served.http.get("/api/agents").json()["agents"]["echo"]["ramp"] == ramped.json()
    other = served.http.put("/api/agents/echo/ramp", json={"to": "3", "percent": 10})
    assert other.status_code == 422 and "is ramping to version 2" in other.json()["error"]
    assert served.http.put("/api/agents/echo/ramp", json={"to": "3", "percent": 150}).status_code == 422
    assert served.http.post("/api/agents/echo/rollback").json()["to"] is None
    again = served.http.post("/api/agents/echo/rollback")
    assert again.status_code == 422 and "has no ramp" in again.json()["error"]
    assert served.http.get("/api/agents").json()["agents"]["echo"]["ramp"] is None


def test_the_schedules_api_adds_lists_pauses_triggers_and_deletes(served: Served) -> None:
    dag = {"name": "hourly", "nodes": [{"id": "a", "agent": "echo"}]}
    added = served.http.post(
        "/api/schedules", json={"name": "hourly", "dag": dag, "cron": "0 * * * *", "tz": "Asia/Tokyo"}
    )
    assert added.status_code == 201, added.text
    fire = datetime.fromisoformat(added.json()["next_fire"])
    assert fire.minute == 0 and fire.second == 0 and timedelta(0) < fire - datetime.now(UTC) <= timedelta(hours=1)
    listed = served.http.get("/api/overview").json()["schedules"]
    assert [(s["name"], s["when"], s["next_fire"]) for s in listed] == [
        ("hourly", "cron 0 * * * * (Asia/Tokyo)", added.json()["next_fire"])
    ]
    again = served.http.post("/api/schedules", json={"name": "hourly", "dag": dag, "every": "5m"})
    assert again.status_code == 422 and "exists" in again.json()["error"]
    bad = served.http.post("/api/schedules", json={"name": "bad", "dag": dag, "cron": "99 * * * *"})
    assert bad.status_code == 422 and "cron '99 * * * *'" in bad.json()["error"]
    assert served.http.get("/api/schedules").json()["schedules"][0]["name"] == "hourly"  # bad left nothing
    paused = served.http.post("/api/schedules/hourly/pause").json()
    assert paused["paused"] and paused["next_fire"] is None
    run_id = served.http.post("/api/schedules/hourly/trigger").json()["run_id"]
    assert served.wait_end(run_id)["schedule"] == "hourly"
    assert served.http.get("/api/schedules/hourly").json()["last_run"] == run_id
    assert served.http.delete("/api/schedules/hourly").status_code == 204
    gone = served.http.post("/api/schedules/hourly/resume")
    assert gone.status_code == 404 and "no schedule named 'hourly'" in gone.json()["error"]


def test_the_console_follows_workers_and_runs_live_in_a_browser(served: Served, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    executable = chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        problems: list[str] = []
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"{served.url}/?token={TOKEN}")
            page.wait_for_selector("body[data-ready=true]")
            page.evaluate("window.__sameDocument = true")  # gone if the page reloads
            flaky_workers = page.locator('tr[data-agent="flaky"] td:nth-child(2)')
            expect(flaky_workers).to_have_text("0")
            worker = WorkerProcess(
                served.settings,
                ["flaky"],
                log_path=tmp_path / "w.log",
                extra_env={"PYTHONPATH": str(ROOT), **SUPPORT_ENV},
            ).start()
            try:
                worker.wait_ready(served.registry, timeout=30)
                ready = time.monotonic()
                expect(flaky_workers).to_have_text("1", timeout=5_000)  # the bar: within 5 s of its start
                shown = time.monotonic() - ready
                nightly = {"name": "nightly", "nodes": [{"id": "a", "agent": "echo"}]}
                added = served.http.post("/api/schedules", json={"name": "nightly", "dag": nightly, "every": "1h"})
                assert added.status_code == 201, added.text
                listed = page.locator('tr[data-schedule="nightly"] td:nth-child(4) time')
                expect(listed).to_have_attribute("datetime", added.json()["next_fire"], timeout=5_000)
                assert (listed.text_content() or "").startswith("in ")
                page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
                assert served.http.delete("/api/schedules/nightly").status_code == 204
                page.click('tr[data-agent="flaky"] a')
                page.wait_for_selector(f'tr[data-worker="{worker.hostname}"]')
            finally:
                worker.stop()
            print(f"the overview showed the new worker {shown:.2f} s after it registered")

            page.goto(f"{served.url}/runs")
            page.wait_for_selector("body[data-ready=true]")
            page.evaluate("window.__sameDocument = true")
            gate = tmp_path / "gate"
            submitted = time.monotonic()
            run = served.submit(
                {"name": "live", "nodes": [{"id": "w", "agent": "waiter", "params": {"gate": str(gate)}}]}
            )
            row = page.locator(f'tr[data-run="{run["run_id"]}"]')
            expect(row).to_have_attribute("data-status", "running", timeout=2_000)  # the bar: within 2 s
            appeared = time.monotonic() - submitted
            gate.touch()
            expect(row).to_have_attribute("data-status", "succeeded", timeout=10_000)
            assert page.evaluate("window.__sameDocument") is True
            assert "ago" in (row.locator("td:nth-child(4)").text_content() or "")
            page.screenshot(path=str(tmp_path / "runs.png"), full_page=True)
            print(f"a run submitted with the runs page open appeared {appeared:.2f} s later")

            bad = failing(served, tmp_path)
            served.wait_end(bad["run_id"])
            page.select_option('select[name="status"]', "failed")
            page.click('#filter button[type="submit"]')
            page.wait_for_url("**/runs?status=failed")
            page.wait_for_selector(f'tr[data-run="{bad["run_id"]}"]')
            statuses = page.eval_on_selector_all("#runs tbody tr", "rows => rows.map(r => r.dataset.status)")
            assert statuses and set(statuses) == {"failed"}
            assert page.input_value('select[name="status"]') == "failed"  # the URL holds the filter
            page.set_viewport_size({"width": 420, "height": 900})
            page.screenshot(path=str(tmp_path / "runs-narrow.png"), full_page=True)
            assert problems == []
        finally:
            browser.close()
