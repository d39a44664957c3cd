"""A node's marks as the engine packs them in its run's ``node`` hash (``engine/lua/common/marks.lua``)."""

from __future__ import annotations

from typing import Any

from coditect_tasks import keys


def marks(client: Any, run_id: str) -> dict[str, tuple[str, str, str]]:
    """Node → (seq, order, phase) of every node of the run that has marks."""
    fields = client.hgetall(keys.run_prefix(run_id) + "node")
    return {
        field[1:]: tuple(value.split(",", 2))  # type: ignore[misc]
        for field, value in fields.items()
        if field.startswith("~")
    }


def message_seq(client: Any, run_id: str, node: str) -> str:
    """The seq of node's newest message: its task id is ``<run>:<node>:<seq>``."""
    return marks(client, run_id)[node][0]


def drop_templates(client: Any, run_id: str) -> None:
    """Forget which templates the run's messages are built from: none of its nodes can be queued."""
    node = keys.run_prefix(run_id) + "node"
    client.hdel(node, *[field for field in client.hkeys(node) if field.startswith("#") and field != "#"])


def to_previous_layout(client: Any, run_id: str, whole_templates: bool = False) -> None:
    """Rewrite a run as the previous release wrote it: its marks in the hashes ``seq``, ``order`` and
    ``phase``, its template ids in ``tpls`` (or, ``whole_templates``, the release before: each template
    whole, its run id filled in, in ``tpl``)."""
    p = keys.run_prefix(run_id)
    fields = client.hgetall(p + "node")
    for node, (seq, order, phase) in marks(client, run_id).items():
        for suffix, value in (("seq", seq), ("order", order), ("phase", phase)):
            if value:
                client.hset(p + suffix, node, value)
    ids = {field[1:]: value for field, value in fields.items() if field.startswith("#") and field != "#"}
    for key, ident in ids.items():
        if whole_templates:
            text = client.hget(keys.TEMPLATES, ident).replace("@@RUN@@", run_id).replace("@@TRACE@@", "")
            client.hset(p + "tpl", key, text)
        else:
            client.hset(p + "tpls", key, ident)
    client.hdel(p + "node", *[field for field in fields if field[0] in "#~"])
