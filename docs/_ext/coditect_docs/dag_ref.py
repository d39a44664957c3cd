"""The DAG file format, from the model in ``coditect_tasks.dag.spec``: the document's fields
(``Dag``'s ``to_json``) and each node's (``Node``'s dataclass fields and ``#:`` comments), with
the limits from ``Settings``."""

from __future__ import annotations

import dataclasses
import inspect

from coditect_tasks.dag import spec

from .markdown import UNDOCUMENTED, code, prose, table
from .settings_ref import comments


def node_fields() -> list[tuple[str, str, str, str]]:
    """(field, type, default, meaning) for each field a node may have in a DAG file."""
    meanings = comments(spec.Node)
    hints = inspect.get_annotations(spec.Node)
    rows = []
    for field in dataclasses.fields(spec.Node):
        if field.name not in spec.NODE_FIELDS:
            continue
        if field.default is not dataclasses.MISSING:
            default = repr(field.default)
        elif field.default_factory is not dataclasses.MISSING:
            default = repr(field.default_factory())
        else:
            default = "required"
        rows.append((field.name, str(hints[field.name]), default, meanings.get(field.name, UNDOCUMENTED)))
    return rows


def render() -> str:
    rows = [(code(n), code(t), code(d), prose(m)) for n, t, d, m in node_fields()]
    return table(["field", "type", "default", "meaning"], rows)
