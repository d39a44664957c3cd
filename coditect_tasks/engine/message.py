"""A node's Celery message, built as a template the Lua scripts fill in, shared by every run.

The engine pushes node messages from Lua, so the message must be a string Lua can complete by
substitution: Celery's own protocol-2 factory builds it with placeholders, once per agent and
node timeout (``template_key``). Nothing of one run is in it (its id and trace are placeholders
too), so runs share it (``keys.TEMPLATES``, by ``template_id``) and a run holds only the id.

Every queued node holds a message in Redis, so the headers Celery's worker reads with a default
(``UNSET``) are left out when they hold it, and the JSON is compact: about 60 % of Celery's.
"""

from __future__ import annotations

import hashlib
import json

from celery import Celery

from .. import keys
from ..agents import Agent

#: Protocol-2 headers Celery's worker reads with ``.get`` and these values as the default (its
#: ``Request`` and the task ``Context``): left out of a node's message. ``origin`` (the submitting
#: process) and ``argsrepr`` (always ``()``) only ever reach logs and Flower; ``kwargsrepr`` stays,
#: so Flower shows each task's run and node.
UNSET: dict[str, object] = {
    "shadow": None,
    "eta": None,
    "expires": None,
    "group": None,
    "group_index": None,
    "parent_id": None,
    "retries": 0,
    "stamped_headers": None,
    "stamps": {},
    "replaced_task_nesting": 0,
}
#: ``lang`` is read only to convert protocol-1 messages, and ``root_id`` (the message's own id:
#: a node is no subtask) only to pass on to subtasks, which agents do not send.
DROPPED = ("origin", "argsrepr", "lang", "root_id")


def template_key(agent: str, timeout: float | None) -> str:
    """Name of the message template for ``agent`` under a node's ``timeout`` (one per pair and run)."""
    return f"{agent}|{timeout or ''}"


def template_id(template: str) -> str:
    """The id a template is shared under: its digest, so equal templates are one."""
    return hashlib.sha1(template.encode(), usedforsecurity=False).hexdigest()[:16]


def message_template(app: Celery, agent: Agent, timeout: float | None, traced: bool = False) -> str:
    """The Redis-transport envelope of a node's Celery message, with ``@@RUN@@``, ``@@NODE@@``,
    ``@@TID@@``, ``@@ORDER@@`` (and ``traced``, ``@@TRACE@@``) placeholders that the Lua ``push``
    fills in.

    Built with Celery's own protocol-2 message factory; the body is plain JSON
    (no ``body_encoding``) so that Lua can fill it by substitution. The run's root
    traceparent goes in the headers, where Celery's tracing looks.
    """
    hard, soft = agent.time_limits(timeout)
    message = app.amqp.as_task_v2(
        "@@TID@@",
        agent.task_name,
        args=(),
        kwargs={"run_id": "@@RUN@@", "node_id": "@@NODE@@"},
        time_limit=hard,
        soft_time_limit=soft,
        ignore_result=True,
        kwargsrepr="{'run_id': '@@RUN@@', 'node_id': '@@NODE@@'}",
    )
    headers = {
        name: value
        for name, value in message.headers.items()
        if name not in DROPPED and not (name in UNSET and value == UNSET[name])
    }
    headers[keys.ORDER_HEADER] = "@@ORDER@@"
    if traced:
        headers["traceparent"] = "@@TRACE@@"
    # Only what kombu's Redis transport needs: its delivery tag (the unacked index) and routing. Celery
    # reads ``correlation_id`` (rpc replies only) and kombu ``priority`` (a restore) with defaults, and
    # ``delivery_mode`` and ``body_encoding`` mean nothing on Redis.
    properties = {"delivery_tag": "@@TID@@", "delivery_info": {"exchange": "", "routing_key": agent.queue}}
    envelope = {
        "body": json.dumps((*message.body[:2], {}), separators=(",", ":")),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
    }
    return json.dumps(envelope, separators=(",", ":"))
