"""``coditect-tasks serve`` as a client meets it: a real server process over a real Redis and real
worker processes, reached over HTTP (httpx) and in a real browser (chromium through Playwright)."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from coditect_tasks import keys
from coditect_tasks.history.recorder import Recorder
from coditect_tasks.history.store import HistoryStore
from coditect_tasks.redis_server import free_port
from tests.conftest import run_cli, wait_for

from .conftest import FLOWER, MAX_NODES, TOKEN, Served, chromium

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("api")]  # one `serve` for the module


def diamond(name: str = "diamond") -> dict[str, Any]:
    return {
        "name": name,
        "nodes": [
            {"id": "a", "agent": "emit", "params": {"value": 1}},
            {"id": "b", "agent": "echo", "after": ["a"]},
            {"id": "c", "agent": "echo", "after": ["a"]},
            {"id": "d", "agent": "echo", "after": ["b", "c"]},
        ],
    }


def test_every_api_call_needs_the_token_and_pages_take_it_once(served: Served) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        for method, path in (("GET", "/api/runs"), ("POST", "/api/runs"), ("GET", "/api/agents")):
            reply = httpx.request(method, served.url + path, headers=headers)
            assert reply.status_code == 401, (method, path, reply.text)
            assert reply.json() == {"error": "missing or wrong bearer token"}
    assert httpx.get(served.url + "/").status_code == 401
    with httpx.Client(base_url=served.url, follow_redirects=True) as browser:
        reply = browser.get(f"/?token={TOKEN}")  # follows the redirect that moves it into a cookie
        assert reply.status_code == 200 and "Overview" in reply.text
        assert reply.url.query == b""
        assert browser.get("/api/runs").status_code == 200
    assert httpx.get(served.url + "/api/runs", headers={"Authorization": "Bearer t\u00e9".encode()}).status_code == 401
    assert httpx.get(served.url + "/?token=%C3%A9").status_code == 401
    schema = httpx.get(served.url + "/openapi.json").json()
    for path in ("/api/runs", "/api/runs/{run_id}", "/api/runs/{run_id}/cancel", "/api/runs/{run_id}/retry"):
        assert path in schema["paths"], path
    for path in ("/api/runs/{run_id}/events", "/api/agents"):
        assert path in schema["paths"], path
    body = schema["paths"]["/api/runs"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/yaml"} <= set(body)
    assert {"RunDocument", "NodeState", "Error", "RunList", "Agents"} <= set(schema["components"]["schemas"])


def test_browsers_on_other_sites_and_other_host_names_are_refused(served: Served) -> None:
    """No cross-site request changes anything, and a loopback server answers only loopback names:
    a page of another site (or one that rebinds its DNS name to 127.0.0.1) cannot use the API."""
    runs = served.registry.client.zcard(keys.RUNS)
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        reply = served.http.post("/api/runs", json=diamond(), headers=headers)
        assert reply.status_code == 403 and "another site" in reply.json()["error"]
    reply = served.http.get("/api/runs", headers={"Host": "evil.example"})
    assert reply.status_code == 400 and "evil.example" in reply.json()["error"]
    assert served.http.post("/api/runs", content=json.dumps(diamond())).status_code == 415  # no Content-Type
    assert served.registry.client.zcard(keys.RUNS) == runs
    same_site = {"Origin": served.url, "Sec-Fetch-Site": "same-origin"}
    assert served.http.post("/api/runs", json=diamond(), headers=same_site).status_code == 201


def test_serve_refuses_an_open_api_beyond_loopback(served: Served) -> None:
    result = run_cli(["serve", "--address", "0.0.0.0", "--port", str(free_port())], served.env, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "coditect-tasks: error: --address: 0.0.0.0 is reachable beyond this machine; set CODITECT_API_TOKEN first"
    ]


def test_submit_read_list_and_cancel_through_the_api(served: Served) -> None:
    first = served.submit(diamond("first"))
    assert first["status"] == "running" and set(first["nodes"]) == {"a", "b", "c", "d"}
    yaml_doc = "name: second\nnodes:\n  - id: only\n    agent: emit\n    params: {value: 7}\n"
    reply = served.http.post("/api/runs", content=yaml_doc, headers={"Content-Type": "application/yaml"})
    assert reply.status_code == 201, reply.text
    second = reply.json()
    done = served.wait_end(first["run_id"])
    assert done["status"] == "succeeded"
    assert done["nodes"]["d"]["result"]["upstream"]["b"]["upstream"] == {"a": 1}
    printed = run_cli(["dag", "status", first["run_id"], "--json"], served.env)
    assert printed.returncode == 0, printed.stderr
    assert served.http.get(f"/api/runs/{first['run_id']}").json() == json.loads(printed.stdout)
    assert served.wait_end(second["run_id"])["nodes"]["only"]["result"] == 7

    listed = served.http.get("/api/runs", params={"limit": 1}).json()["runs"]
    assert [r["run_id"] for r in listed] == [second["run_id"]]
    older = served.http.get("/api/runs", params={"limit": 5, "before": second["run_id"]}).json()["runs"]
    assert older[0]["run_id"] == first["run_id"] and older[0]["status"] == "succeeded"
    assert second["run_id"] not in [r["run_id"] for r in older]

    slow = served.submit({"name": "slow", "nodes": [{"id": "nap", "agent": "sleep", "params": {"seconds": 30}}]})
    wait_for(
        lambda: served.http.get(f"/api/runs/{slow['run_id']}").json()["nodes"]["nap"]["status"] == "running", 20, "nap"
    )
    reply = served.http.post(f"/api/runs/{slow['run_id']}/cancel")
    assert reply.status_code == 200, reply.text
    assert served.wait_end(slow["run_id"], timeout=20)["status"] == "cancelled"
    early = served.http.post(f"/api/runs/{slow['run_id']}/retry")  # its node still runs: it would run twice
    assert early.status_code == 409 and "nap still run" in early.json()["error"]
    again = served.http.post(f"/api/runs/{slow['run_id']}/cancel")
    assert again.status_code == 409 and "nothing to cancel" in again.json()["error"]

    for method, path in (("GET", ""), ("POST", "/cancel"), ("POST", "/retry"), ("GET", "/events")):
        reply = served.http.request(method, f"/api/runs/nosuchrun{path}")
        assert reply.status_code == 404, (path, reply.text)
        assert reply.json() == {"error": "no run 'nosuchrun' in the live state or the history"}


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        (
            {
                "name": "loop",
                "nodes": [{"id": "x", "agent": "echo", "after": ["y"]}, {"id": "y", "agent": "echo", "after": ["x"]}],
            },
            "cycle",
        ),
        ({"name": "who", "nodes": [{"id": "x", "agent": "nobody"}]}, "unknown agent 'nobody'"),
        ({"name": "bad", "nodes": [{"id": "x", "agent": "echo", "retries": "many"}]}, "retries"),
        (
            {"name": "big", "nodes": [{"id": f"n{i}", "agent": "echo"} for i in range(MAX_NODES + 1)]},
            "exceed the maximum",
        ),
        ("name: [unclosed", "not valid YAML"),
    ],
)
def test_invalid_dags_get_422_naming_the_problem_and_enqueue_nothing(served: Served, doc: Any, problem: str) -> None:
    runs_before = served.registry.client.zcard(keys.RUNS)
    if isinstance(doc, str):
        reply = served.http.post("/api/runs", content=doc, headers={"Content-Type": "application/yaml"})
    else:
        reply = served.http.post("/api/runs", json=doc)
    assert reply.status_code == 422, reply.text
    assert problem in reply.json()["error"]
    assert served.registry.client.zcard(keys.RUNS) == runs_before
    assert served.http.post("/api/runs", content="x", headers={"Content-Type": "text/plain"}).status_code == 415


def test_retry_runs_only_what_did_not_succeed(served: Served, tmp_path: Path) -> None:
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b", "c", "d")}
    gate = tmp_path / "gate"
    doc = {
        "name": "gated",
        "nodes": [
            {"id": "a", "agent": "counted", "params": {"log": str(logs["a"])}},
            # b fails once d has run: its failure ends the run, which would skip a d not yet begun
            {
                "id": "b",
                "agent": "gated",
                "after": ["a"],
                "params": {"log": str(logs["b"]), "gate": str(gate), "after": str(logs["d"])},
            },
            {"id": "c", "agent": "counted", "after": ["b"], "params": {"log": str(logs["c"])}},
            {"id": "d", "agent": "counted", "params": {"log": str(logs["d"])}},
            {"id": "e", "agent": "waiter", "params": {"gate": str(tmp_path / "later")}},  # the run waits for it
        ],
    }
    parent = served.submit(doc)
    unfinished = served.http.post(f"/api/runs/{parent['run_id']}/retry")
    assert unfinished.status_code == 409 and "only a failed or cancelled run" in unfinished.json()["error"]
    (tmp_path / "later").touch()
    failed = served.wait_end(parent["run_id"])
    assert failed["status"] == "failed"
    assert {n: failed["nodes"][n]["status"] for n in "abcd"} == {
        "a": "succeeded",
        "b": "failed",
        "c": "skipped",
        "d": "succeeded",
    }

    gate.touch()
    reply = served.http.post(f"/api/runs/{parent['run_id']}/retry")
    assert reply.status_code == 201, reply.text
    child = reply.json()
    assert child["parent_run_id"] == parent["run_id"] and child["run_id"] != parent["run_id"]
    assert child["nodes"]["a"]["status"] == "succeeded" and child["nodes"]["a"]["attempts"] == 0
    done = served.wait_end(child["run_id"])
    assert done["status"] == "succeeded", done
    # succeeded nodes did not run again; the failed one and the one it skipped ran once more
    assert {n: len(p.read_text().splitlines()) for n, p in logs.items()} == {"a": 1, "b": 2, "c": 1, "d": 1}
    assert done["nodes"]["a"]["result"] == failed["nodes"]["a"]["result"]
    assert done["nodes"]["b"]["result"] == {"upstream": {"a": failed["nodes"]["a"]["result"]}}
    assert done["nodes"]["b"]["attempts"] == 1

    store = HistoryStore.from_settings(served.settings)
    Recorder(served.registry.client, store, retention=600).drain()
    assert store.run(child["run_id"]) == {**done, "warnings": []}  # the history reads the same

    refused = served.http.post(f"/api/runs/{child['run_id']}/retry")
    assert refused.status_code == 409 and "is succeeded" in refused.json()["error"]
    cli = run_cli(["dag", "retry", child["run_id"]], served.env)
    assert cli.returncode == 1 and cli.stderr.strip().endswith("only a failed or cancelled run can be retried")


def test_event_stream_is_ordered_replayable_and_resumable(served: Served) -> None:
    nap = {"seconds": 0.3}
    run = served.submit(
        {
            "name": "chain",
            "nodes": [
                {"id": "one", "agent": "sleep", "params": nap},
                {"id": "two", "agent": "sleep", "params": nap, "after": ["one"]},
                {"id": "three", "agent": "sleep", "params": nap, "after": ["two"]},
            ],
        }
    )
    seen: list[float] = []
    live = served.events(run["run_id"], seen=seen)  # opened while the run goes: history so far, then live
    data = [e["data"] for e in live]
    # delivered as they happened (published), not found by the follower's recheck after 5 s of silence
    lags = [arrived - datetime.fromisoformat(d["ts"]).timestamp() for d, arrived in zip(data, seen, strict=True)]
    assert max(lags[-4:]) < 1.5, lags
    assert data[0] == {**data[0], "node": None, "status": "running"}
    assert (data[-1]["node"], data[-1]["status"]) == (None, "succeeded")
    for node in ("one", "two", "three"):
        assert [d["status"] for d in data if d["node"] == node] == ["queued", "running", "succeeded"]
    order = [d["node"] for d in data if d["status"] == "succeeded"]
    assert order == ["one", "two", "three", None]
    running = [d for d in data if d["status"] == "running" and d["node"]]
    assert all(d["attempt"] == 1 and d["worker"] and d["ts"] for d in running)
    ids = [e["id"] for e in live]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-")))) and len(set(ids)) == len(ids)

    assert served.events(run["run_id"]) == live  # a late client replays the same stream
    store = HistoryStore.from_settings(served.settings)
    Recorder(served.registry.client, store, retention=600).drain()  # now from the database alone
    assert served.registry.client.xlen(keys.HISTORY) == 0
    assert served.events(run["run_id"]) == live
    assert served.events(run["run_id"], last=ids[3]) == live[4:]  # a reconnect goes on after Last-Event-ID
    after_end = served.http.get(f"/api/runs/{run['run_id']}/events", headers={"Last-Event-ID": ids[-1]})
    assert after_end.status_code == 204  # tells a browser's EventSource to stop reconnecting
    malformed = served.http.get(f"/api/runs/{run['run_id']}/events", headers={"Last-Event-ID": "soon"})
    assert malformed.status_code == 422 and "'soon'" in malformed.json()["error"]
    ended = run_cli(["dag", "events", run["run_id"], "--after", ids[-1]], served.env)
    assert (ended.returncode, ended.stdout) == (0, "")

    printed = run_cli(["dag", "events", run["run_id"], "--json"], served.env)
    assert printed.returncode == 0, printed.stderr
    assert [json.loads(line)["id"] for line in printed.stdout.splitlines()] == ids


def test_agents_endpoint_matches_the_cli(served: Served) -> None:
    api = served.http.get("/api/agents").json()
    cli = json.loads(run_cli(["agents", "--json"], served.env).stdout)
    assert set(api["agents"]) == set(cli["agents"]) >= {"echo", "sleep", "gated"}
    for name, info in api["agents"].items():
        other = cli["agents"][name]
        assert (info["queue"], info["declared"]) == (other["queue"], other["declared"])
        hosts = {w["hostname"] for w in info["workers"]}
        assert hosts == {w["hostname"] for w in other["workers"]}
    assert len(api["agents"]["echo"]["workers"]) == 2


def test_run_page_follows_the_run_live_in_a_browser(served: Served, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    executable = chromium()
    gate = tmp_path / "gate"
    dag = {
        "name": "page",
        "nodes": [
            {"id": "first", "agent": "waiter", "params": {"gate": str(gate)}},
            {"id": "fan", "agent": "emit", "after": ["first"], "foreach": [1, 2, 3]},
            {"id": "last", "agent": "sleep", "params": {"seconds": 1.0}, "after": ["fan"]},
        ],
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 420})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            run = served.submit(dag)
            page.goto(f"{served.url}/runs/{run['run_id']}?token={TOKEN}")
            page.wait_for_selector("body[data-ready=true]")
            page.evaluate("window.__sameDocument = true")  # gone if the page reloads
            page.wait_for_selector('[data-node="first"][data-status="running"]', state="attached", timeout=15_000)
            assert page.get_attribute('[data-node="last"]', "data-status") == "pending"
            gate.touch()  # the rest of the run happens while the page watches
            for node, status in (("last", "running"), ("last", "succeeded")):
                page.wait_for_selector(
                    f'[data-node="{node}"][data-status="{status}"]', state="attached", timeout=15_000
                )
            assert page.evaluate("window.__sameDocument") is True
            expect(page.locator("#status")).to_have_text("succeeded")
            assert page.get_attribute('[data-node="fan"]', "data-status") == "succeeded"
            assert "×3" in (page.text_content('[data-node="fan"]') or "")
            page.click('[data-node="first"] rect:last-of-type')
            page.wait_for_selector("#details a")
            link = page.get_attribute("#details a", "href")
            worker = served.http.get(f"/api/runs/{run['run_id']}").json()["nodes"]["first"]["worker"]
            assert link == f"{FLOWER}/worker/{quote(worker, safe='')}"
            expect(page.locator("#details")).to_contain_text('"gate": "open"')
            page.screenshot(path=str(tmp_path / "run-page.png"))
            page.goto(f"{served.url}/runs")  # the run list, with the cookie the first visit set
            row = page.wait_for_selector(f'tr[data-run="{run["run_id"]}"]')
            assert "succeeded" in row.inner_text()
            row.query_selector("a").click()
            page.wait_for_selector(
                'body[data-ready=true] [data-node="last"][data-status="succeeded"]', state="attached"
            )
            assert problems == []
        finally:
            browser.close()


def test_the_run_page_shows_what_a_node_waits_for_and_takes_an_approval(served: Served, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    executable = chromium()
    gate = tmp_path / "gate"
    assert served.http.put("/api/limits/page-slot", json={"concurrency": 1}).status_code == 200
    waiter = {"agent": "waiter", "params": {"gate": str(gate)}, "limits": ["page-slot"]}
    throttled = served.submit({"name": "throttled", "nodes": [{"id": "one", **waiter}, {"id": "two", **waiter}]})
    approval = served.submit(
        {"name": "ship", "nodes": [{"id": "ok", "approval": {}}, {"id": "after", "agent": "echo", "after": ["ok"]}]}
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 520})
            page.goto(f"{served.url}/runs/{throttled['run_id']}?token={TOKEN}")
            page.wait_for_selector('body[data-ready=true] [data-node="one"][data-status="running"]', state="attached")
            page.click('[data-node="two"] rect:last-of-type')
            expect(page.locator("#details")).to_contain_text("waits for limit")
            expect(page.locator("#details")).to_contain_text("page-slot")
            gate.touch()  # one ends, and two takes its slot while the page watches
            page.wait_for_selector('[data-node="two"][data-status="succeeded"]', state="attached", timeout=15_000)
            expect(page.locator("#details")).not_to_contain_text("waits for limit")
            page.goto(f"{served.url}/runs/{approval['run_id']}")  # the cookie the first visit set
            page.wait_for_selector('body[data-ready=true] [data-node="ok"][data-status="waiting"]', state="attached")
            page.click('[data-node="ok"] rect:last-of-type')
            page.fill('#decide input[name="by"]', "ana")
            page.fill('#decide input[name="comment"]', "ship it")
            page.screenshot(path=str(tmp_path / "approval-waiting.png"))
            with page.expect_response(lambda r: r.url.endswith("/nodes/ok/approve")) as decided:
                page.click('#decide button[data-decision="approve"]')
            assert decided.value.status == 200, decided.value.text()
            ended = served.wait_end(approval["run_id"])
            assert ended["status"] == "succeeded", ended
            try:  # the page follows: its event stream, or the stream's recheck after a silence
                page.wait_for_selector('[data-node="after"][data-status="succeeded"]', state="attached", timeout=20_000)
            except Exception as error:
                shown = page.eval_on_selector_all(
                    "[data-node]", "gs => gs.map(g => [g.dataset.node, g.dataset.status])"
                )
                raise AssertionError(f"the page shows {shown}, message {page.text_content('#message')!r}") from error
            expect(page.locator("#details")).to_contain_text("approved by")
            expect(page.locator("#details")).to_contain_text("ana: ship it")
            page.screenshot(path=str(tmp_path / "approval.png"))
        finally:
            browser.close()
            served.http.delete("/api/limits/page-slot")
    decisions = served.http.get(f"/api/runs/{approval['run_id']}").json()["nodes"]["ok"]["result"]["approved_by"]
    assert [(d["by"], d["decision"], d["comment"]) for d in decisions] == [("ana", "approve", "ship it")]
    refused = served.http.post(f"/api/runs/{approval['run_id']}/nodes/ok/approve", json={"by": "bo"})
    assert refused.status_code == 409 and "not waiting" in refused.json()["error"]
    sent = served.http.post("/api/events", json={"name": "nobody.waits", "key": "x", "data": 1})
    assert sent.status_code == 200 and sent.json() == {"resolved": 0}


def test_the_run_page_links_a_spawning_node_to_its_children_and_back(served: Served, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    executable = chromium()
    plan = {"id": "plan", "agent": "plan", "params": {"items": [1, 2], "agent": "sleep", "seconds": 600}}
    planned = served.submit({"name": "planned", "nodes": [plan]})
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 520})
                page.goto(f"{served.url}/runs/{planned['run_id']}?token={TOKEN}")
                page.wait_for_selector('[data-node="plan"][data-status="waiting"]', state="attached", timeout=15_000)
                page.click('[data-node="plan"] rect:last-of-type')
                expect(page.locator("#details")).to_contain_text("waits for child runs")
                children = served.http.get(f"/api/runs/{planned['run_id']}").json()["nodes"]["plan"]["children"]
                assert len(children) == 2
                page.screenshot(path=str(tmp_path / "spawning.png"))
                page.click(f"#details a >> text={children[0][:8]}")
                page.wait_for_url(f"**/runs/{children[0]}")
                expect(page.locator("#parent")).to_contain_text(f"spawned by plan of {planned['run_id'][:8]}")
                page.screenshot(path=str(tmp_path / "child.png"))
            finally:
                browser.close()
        child = served.http.get(f"/api/runs/{children[0]}").json()
        assert (child["parent_run_id"], child["parent_node"]) == (planned["run_id"], "plan")
    finally:
        served.http.post(f"/api/runs/{planned['run_id']}/cancel")  # and with it, its children


def test_the_settings_carry_no_token_into_other_processes(served: Served) -> None:
    with_token = dataclasses.replace(served.settings, api_token=TOKEN)
    assert TOKEN not in repr(with_token)
    assert "CODITECT_API_TOKEN" not in with_token.environment()


def test_limits_are_read_and_changed_through_the_api_as_through_the_cli(served: Served) -> None:
    assert served.http.put("/api/limits/solo", json={"concurrency": 0}).status_code == 422
    changed = served.http.put("/api/limits/solo", json={"concurrency": 1})
    assert changed.status_code == 200 and changed.json()["definition"] == {"concurrency": 1, "per": 1}
    dag = {
        "name": "solo",
        "nodes": [{"id": f"n{i}", "agent": "sleep", "params": {"seconds": 1}, "limits": ["solo"]} for i in range(2)],
    }
    run = served.http.post("/api/runs", json=dag).json()
    throttled = [n for n, node in run["nodes"].items() if node.get("throttled")]
    assert len(throttled) == 1 and run["nodes"][throttled[0]]["throttled"] == {"limit": "solo", "key": ""}
    (solo,) = [x for x in served.http.get("/api/limits").json()["limits"] if x["name"] == "solo"]
    assert solo["keys"][0]["in_use"] == 1 and solo["keys"][0]["waiting"] == 1
    cli = json.loads(run_cli(["limits", "--json"], served.env).stdout)
    assert [x["definition"] for x in cli["limits"] if x["name"] == "solo"] == [solo["definition"]]
    gone = served.http.delete("/api/limits/solo").json()
    assert gone == {"name": "solo", "definition": None}  # no code declares it: its waiter goes at once
    wait_for(lambda: served.http.get(f"/api/runs/{run['run_id']}").json()["status"] == "succeeded", 30, "the run")
    unknown = served.http.post("/api/runs", json=dag)
    assert unknown.status_code == 422 and "unknown limit 'solo'" in unknown.json()["error"]
