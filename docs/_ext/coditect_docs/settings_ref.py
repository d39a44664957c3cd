"""The settings reference: every ``CODITECT_*`` variable, from the ``Settings`` dataclass.

Type and default come from the dataclass fields; the meaning is the field's ``#:`` comment in
``settings.py``, read the way autodoc reads it (Sphinx's ``ModuleAnalyzer``). A field without one
is listed all the same, marked undocumented, so the gap shows instead of hiding.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sphinx.pycode import ModuleAnalyzer

from coditect_tasks.settings import Settings, env_name

from .markdown import UNDOCUMENTED, code, prose, table


@dataclass(frozen=True)
class SettingDoc:
    variable: str
    type: str
    default: str
    meaning: str
    exported: bool
    secret: bool


def comments(cls: type) -> dict[str, str]:
    """Each field's ``#:`` comment along ``cls``'s classes (a subclass may add fields)."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            docs = ModuleAnalyzer.for_module(klass.__module__).find_attr_docs()
        except Exception:  # a class made in a test or a REPL has no source to read
            continue
        for (scope, name), lines in docs.items():
            if scope == klass.__qualname__:
                found[name] = " ".join(" ".join(lines).split())
    return found


def settings_docs(cls: type[Any] = Settings) -> list[SettingDoc]:
    """One entry per field of ``cls``, in declaration order."""
    meanings = comments(cls)
    hints = inspect.get_annotations(cls)
    docs = []
    for field in dataclasses.fields(cls):
        annotation = hints.get(field.name, field.type)
        docs.append(
            SettingDoc(
                variable=env_name(field.name),
                type=str(annotation if isinstance(annotation, str) else getattr(annotation, "__name__", annotation)),
                default=_shown(field.default),
                meaning=meanings.get(field.name, UNDOCUMENTED),
                exported=bool(field.metadata.get("exported", True)),
                secret=not field.repr,
            )
        )
    return docs


def _shown(default: Any) -> str:
    if default is None or default is dataclasses.MISSING:
        return "(none)"
    if isinstance(default, Path):
        return str(default)
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return f"{default:g}" if isinstance(default, float) else str(default)


def _meaning(doc: SettingDoc) -> str:
    if doc.secret:
        return f"{doc.meaning} Secret: read from the environment only, never printed or passed on."
    if not doc.exported:
        return f"{doc.meaning} Not passed on to the processes a command starts."
    return doc.meaning


def render(cls: type[Any] = Settings) -> str:
    """The settings table as Markdown."""
    rows = [(code(d.variable), code(d.type), code(d.default), prose(_meaning(d))) for d in settings_docs(cls)]
    return table(["variable", "type", "default", "meaning"], rows)
