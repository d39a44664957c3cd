"""One directive per generated reference: ``{coditect-reference} settings`` and so on.

Each renders Markdown from the code and parses it in place, so the reference page is a short
hand-written introduction around a table that cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

from . import api_ref, cli_ref, dag_ref, errors_ref, http_ref, metrics_ref, settings_ref

RENDERERS: dict[str, Callable[[], str]] = {
    "python-api": api_ref.render,
    "cli": cli_ref.render,
    "settings": settings_ref.render,
    "http-api": http_ref.render,
    "metrics": metrics_ref.render_metrics,
    "alerts": metrics_ref.render_alerts,
    "exit-codes": errors_ref.render_exit_codes,
    "error-tree": errors_ref.render_tree,
    "dag-format": dag_ref.render,
}


class Reference(SphinxDirective):
    """``{coditect-reference} KIND``: the generated Markdown of one reference kind."""

    required_arguments = 1
    option_spec: ClassVar[dict[str, Any]] = {}

    def run(self) -> list[nodes.Node]:
        kind = self.arguments[0]
        if kind not in RENDERERS:
            raise self.error(f"unknown reference {kind!r} (one of {', '.join(RENDERERS)})")
        self.env.note_dependency(__file__)
        return self.parse_text_to_nodes(RENDERERS[kind](), allow_section_headings=True)


def setup(app: Any) -> None:
    app.add_directive("coditect-reference", Reference)
