"""The Python API reference: autodoc of every name in ``coditect_tasks.__all__`` and of the
error tree, so a name added to ``__all__`` is documented by the next build."""

from __future__ import annotations

import inspect

import coditect_tasks

#: Types the public names take or return that live outside ``__all__``: documented here under
#: their own module, so every signature on the page links somewhere.
SUPPORTING = (
    "coditect_tasks.engine.events.Event",
    "coditect_tasks.state.locks.Lock",
    "coditect_tasks.state.locks.Lease",
    "coditect_tasks.resilience.retry.RetryPolicy",
    "coditect_tasks.client.core.History",
    "coditect_tasks.dag.waits.Wait",
    "coditect_tasks.client.output.Chunk",
    "coditect_tasks.history.queries.RunQuery",
)


def render() -> str:
    """MyST autodoc directives, one per public name, in ``__all__``'s order."""
    parts = []
    for name in coditect_tasks.__all__:
        value = getattr(coditect_tasks, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            continue  # documented with the error tree below
        kind = "autoclass" if inspect.isclass(value) else "autofunction"
        options = "   :members:\n   :undoc-members:\n" if kind == "autoclass" else ""
        directive = f".. {kind}:: coditect_tasks.{name}\n{options}"
        parts.append(f"## `{name}`\n\n{_rst(directive)}")
    parts.append("## Types they take or return\n")
    for path in SUPPORTING:
        directive = f".. autoclass:: {path}\n   :members:\n"
        parts.append(f"### `{path.rsplit('.', 1)[1]}`\n\n{_rst(directive)}")
    automodule = ".. automodule:: coditect_tasks.errors\n   :members:\n   :undoc-members:\n   :show-inheritance:\n"
    parts.append(f"## Errors\n\n{_rst(automodule)}")
    return "\n".join(parts)


def _rst(text: str) -> str:
    """Autodoc writes reStructuredText: MyST hands it to the rST parser this way."""
    return f"```{{eval-rst}}\n{text}```\n"
