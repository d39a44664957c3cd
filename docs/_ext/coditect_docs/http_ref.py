"""The HTTP API reference, from the OpenAPI document FastAPI builds for ``serve``.

The app is made without a server or a connection (its clients connect on first use), so the
document is the one ``GET /openapi.json`` serves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from coditect_tasks.api.routes import create_api
from coditect_tasks.settings import Settings

from .markdown import UNDOCUMENTED, code, prose, table

METHODS = ("get", "post", "put", "patch", "delete")
#: No server is reached: the address only has to parse.
_OFFLINE = Settings(broker_url="redis://127.0.0.1:1/0")


def openapi() -> dict[str, Any]:
    """The OpenAPI document of the ``serve`` app."""
    document: dict[str, Any] = create_api(_OFFLINE).openapi()
    return document


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) for every operation, in the document's order."""
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def _schema_name(content: dict[str, Any]) -> str:
    names = []
    for media, body in content.items():
        schema = body.get("schema", {})
        ref = schema.get("$ref", "")
        names.append(f"{media}: {ref.rsplit('/', 1)[-1] or schema.get('type', 'any')}")
    return "; ".join(names)


def render() -> str:
    """The HTTP API reference as Markdown: one section per operation, then the schemas."""
    document = openapi()
    parts = [f"OpenAPI {document['openapi']}, API version {code(document['info']['version'])}.\n"]
    for method, path, op in operations(document):
        parts.append(f"## {code(method + ' ' + path)}\n")
        parts.append(prose(op.get("description") or op.get("summary") or UNDOCUMENTED) + "\n")
        params = op.get("parameters", [])
        if params:
            rows = [
                (code(p["name"]), p["in"], "yes" if p.get("required") else "no", prose(p.get("description", "")))
                for p in params
            ]
            parts.append(table(["parameter", "in", "required", "meaning"], rows))
        body = op.get("requestBody", {}).get("content")
        if body:
            parts.append(f"Request body: {prose(_schema_name(body))}.\n")
        rows = [
            (code(status), prose(answer.get("description", "")), prose(_schema_name(answer.get("content", {}))))
            for status, answer in op.get("responses", {}).items()
        ]
        parts.append(table(["status", "meaning", "body"], rows))
    parts.append("## Schemas\n")
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        parts.append(f"### {code(name)}\n")
        parts.append(f"```json\n{json.dumps(schema, indent=2)}\n```\n")
    return "\n".join(parts)
