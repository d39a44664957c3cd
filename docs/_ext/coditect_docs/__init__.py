"""The reference pages of the documentation site, generated from the code at build time.

Each module renders one kind of reference as MyST Markdown from the object that defines it
(``Settings``, the Typer app, the FastAPI app, the exporter, ``monitoring/``, the error tree, the
DAG model), so a page cannot drift from the code. ``directives`` plugs them into Sphinx;
``inventory`` lists what the built site must name, for the tests.
"""

from __future__ import annotations

from typing import Any


def setup(app: Any) -> dict[str, Any]:
    """Sphinx entry point (``extensions = ["coditect_docs"]``)."""
    from . import directives, runnable

    directives.setup(app)
    runnable.setup(app)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
