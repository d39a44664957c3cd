"""Sphinx configuration of the coditect-tasks documentation site (MyST Markdown, Furo).

The reference pages are generated from the code by the local extension ``_ext/coditect_docs``;
``coditect-tasks docs`` or ``make docs`` builds and serves the site, ``tests/docs/`` checks it.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "coditect-tasks"
author = "the coditect-tasks authors"
copyright = "2026, the coditect-tasks authors"
release = metadata.version("coditect-tasks")
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.graphviz",
    "coditect_docs",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_ext"]
myst_enable_extensions = ["colon_fence", "deflist", "substitution"]
myst_substitutions = {"release": release}
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"coditect-tasks {release}"
html_static_path: list[str] = []
html_last_updated_fmt = None

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_preserve_defaults = True
graphviz_output_format = "svg"

# -n: every cross-reference must resolve. Names outside this project (the standard library,
# Celery, Redis, …) have no inventory offline, so their references are let go; ours are not.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:class", r"coditect_tasks\..*\.T"),  # a TypeVar, not a class
    (r"py:.*", r"(?!coditect_tasks\.).*"),
]
