"""Exit codes and the error tree, from ``coditect_tasks.errors``: every ``CoditectError``
subclass with the exit code the CLI turns it into."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from coditect_tasks import errors

from .markdown import UNDOCUMENTED, code, prose, table

#: What each exit code of the CLI means; the errors that exit with it are listed beside it.
MEANINGS = {
    0: "success: the command did what it was asked (a run succeeded, a DAG is valid)",
    1: "a workflow failed or was cancelled, or the run's state refused the operation",
    2: "bad input or configuration, or a usage error (an unknown option, a missing argument)",
    3: "a broker or a local server did not answer, or did not start",
    130: "interrupted (Ctrl-C)",
}


@dataclass(frozen=True)
class ErrorDoc:
    name: str
    parent: str
    exit_code: int
    doc: str
    depth: int


def error_docs() -> list[ErrorDoc]:
    """Every error class of the tree, depth first in declaration order."""
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.CoditectError)]
    order = {c: inspect.getsourcelines(c)[1] for c in classes}

    def walk(cls: type[errors.CoditectError], depth: int) -> list[ErrorDoc]:
        doc = inspect.getdoc(cls) if cls.__doc__ else None
        parent = cls.__mro__[1].__name__ if cls is not errors.CoditectError else "Exception"
        out = [ErrorDoc(cls.__name__, parent, cls.exit_code, " ".join((doc or UNDOCUMENTED).split()), depth)]
        children = sorted((c for c in classes if c.__bases__[0] is cls), key=order.__getitem__)
        for child in children:
            out += walk(child, depth + 1)
        return out

    return walk(errors.CoditectError, 0)


def render_exit_codes() -> str:
    by_code: dict[int, list[str]] = {}
    for doc in error_docs():
        by_code.setdefault(doc.exit_code, []).append(doc.name)
    rows = []
    for exit_code in sorted({*by_code, *MEANINGS}):
        raised = ", ".join(f"{{py:exc}}`~coditect_tasks.errors.{n}`" for n in by_code.get(exit_code, []))
        rows.append((code(exit_code), prose(MEANINGS.get(exit_code, "")), raised))
    return table(["exit code", "meaning", "errors that exit with it"], rows)


def render_tree() -> str:
    rows = [
        ("\u2003" * d.depth + f"{{py:exc}}`~coditect_tasks.errors.{d.name}`", code(d.exit_code), prose(d.doc))
        for d in error_docs()
    ]
    return table(["error", "exit code", "meaning"], rows)
