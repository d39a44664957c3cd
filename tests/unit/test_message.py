"""A node's message, as the Lua ``push`` fills its template, is one Celery's worker reads in full."""

from __future__ import annotations

import json
from typing import Any

from celery.worker.request import Request
from kombu.connection import Connection
from kombu.transport.virtual import Message

from coditect_tasks import keys
from coditect_tasks.app import create_app
from coditect_tasks.engine.message import message_template, template_id
from coditect_tasks.engine.taken import stored_record, taken_from
from coditect_tasks.settings import Settings

RUN = "a" * 32
TRACE = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"


def _filled(template: str) -> str:
    """The template with its placeholders filled as queueing.lua's ``fill`` does."""
    values = {"RUN": RUN, "NODE": "build", "TID": f"{RUN}:build:1", "ORDER": "7", "TRACE": TRACE}
    for name, value in values.items():
        template = template.replace(f"@@{name}@@", value)
    return template


def test_celerys_worker_reads_every_field_of_a_node_message() -> None:
    app = create_app(Settings.from_env().with_broker("redis://127.0.0.1:1/0"))
    template = message_template(app, app.agents["noop"], 30, traced=True)
    with Connection("memory://") as connection:  # type: ignore[no-untyped-call]
        message = Message(json.loads(_filled(template)), channel=connection.default_channel)  # type: ignore[no-untyped-call]
        request = Request(message, app=app)
    assert (request.id, request.name) == (f"{RUN}:build:1", "agents.noop")
    assert request.kwargs == {"run_id": RUN, "node_id": "build"}
    assert list(request.time_limits) == [30.0, 27.0]
    assert request.root_id is None and request.parent_id is None
    assert request.correlation_id is None and request.delivery_info["priority"] is None
    assert (request.eta, request.expires, request.group) == (None, None, None)
    assert request.kwargsrepr == f"{{'run_id': '{RUN}', 'node_id': 'build'}}"  # Flower shows run and node
    headers = message.headers
    assert headers[keys.ORDER_HEADER] == "7" and headers["traceparent"] == TRACE
    assert message.delivery_info["routing_key"] == "agents.noop"
    app.close()


def test_a_node_message_is_smaller_than_celerys_own() -> None:
    """Celery's own message for a call with the same kwargs holds about 1,000 bytes in Redis."""
    app = create_app(Settings.from_env().with_broker("redis://127.0.0.1:1/0"))
    template = message_template(app, app.agents["noop"], None)
    assert len(_filled(template)) < 560
    assert '": ' not in template and "origin" not in template and '"argsrepr"' not in template
    app.close()


def test_a_template_holds_nothing_of_one_run_so_runs_share_it() -> None:
    app = create_app(Settings.from_env().with_broker("redis://127.0.0.1:1/0"))
    plain = message_template(app, app.agents["noop"], 30)
    assert plain == message_template(app, app.agents["noop"], 30)  # one id for every run
    assert template_id(plain) != template_id(message_template(app, app.agents["noop"], 60))
    assert "traceparent" not in json.loads(_filled(plain))["headers"]
    assert template_id(plain) != template_id(message_template(app, app.agents["noop"], 30, traced=True))
    app.close()


def test_a_node_record_is_stored_only_where_it_differs_from_the_default() -> None:
    plain: dict[str, Any] = {
        "params": {},
        "items": None,
        "foreach": False,
        "retries": None,
        "timeout": None,
        "fallback": None,
    }
    assert stored_record(plain) is None  # a fan-out's nodes hold no record in Redis
    assert stored_record({**plain, "params": {"repo": "a"}, "retries": 2}) == '{"params":{"repo":"a"},"retries":2}'
    reply = {"ok": 1, "token": 1, "record": False, "upstream": "{}", "items": None, "parent": "", "links": "[]"}
    assert taken_from({**reply, "retried": 0}, "").record == plain  # type: ignore[union-attr]
    stored = {**reply, "retried": 0, "record": '{"timeout":30}'}
    assert taken_from(stored, "").record == {**plain, "timeout": 30}  # type: ignore[union-attr]
