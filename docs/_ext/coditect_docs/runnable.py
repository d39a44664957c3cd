"""Code blocks that CI runs: ``{runnable} python`` or ``{runnable} sh`` in a tutorial or how-to page
(``{runnable} yaml`` with ``:file:`` for a file the code reads).

A page's runnable blocks are one script, in order: Python blocks share one namespace, shell blocks
run through ``bash`` in the same working folder, and a block with ``:file: NAME`` is written to that
file first (an agent module the page's worker imports). ``:workers: a,b`` names agents the page
needs a live worker for. ``tests/docs/test_examples.py`` runs each page against a real Redis and
real worker processes; the site shows the blocks as ordinary code.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from markdown_it import MarkdownIt
from sphinx.util.docutils import SphinxDirective

#: What a block may be: code that runs, or (with ``:file:``) a file the page's code reads.
LANGUAGES = ("python", "sh", "yaml")


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int
    options: dict[str, str] = field(default_factory=dict)

    @property
    def file(self) -> str | None:
        return self.options.get("file")

    @property
    def workers(self) -> list[str]:
        return [a.strip() for a in self.options.get("workers", "").split(",") if a.strip()]


class Runnable(SphinxDirective):
    """Shows the block as code; its being runnable is for the tests."""

    required_arguments = 1
    has_content = True
    option_spec: ClassVar[dict[str, Any]] = {"file": directives.unchanged, "workers": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        language = self.arguments[0]
        if language not in LANGUAGES:
            raise self.error(f"runnable blocks are {', '.join(LANGUAGES)}, not {language!r}")
        if language == "yaml" and "file" not in self.options:
            raise self.error("a yaml block runs nothing: give it a :file: for the page's code to read")
        text = "\n".join(self.content)
        block = nodes.literal_block(text, text, language="bash" if language == "sh" else language)
        self.set_source_info(block)
        if "file" not in self.options:
            return [block]
        container = nodes.container(classes=["literal-block-wrapper"], literal_block=True)
        caption = nodes.caption(self.options["file"], "", nodes.literal(text=self.options["file"]))
        container += [caption, block]
        return [container]


def blocks(page: Path) -> list[Block]:
    """The runnable blocks of a MyST page, in order."""
    found = []
    for token in MarkdownIt("commonmark").parse(page.read_text()):
        if token.type != "fence" or not token.info.startswith("{runnable}"):
            continue
        language = token.info.removeprefix("{runnable}").strip()
        options, lines = {}, token.content.splitlines()
        while lines and lines[0].startswith(":"):
            key, _, value = lines.pop(0)[1:].partition(":")
            options[key.strip()] = value.strip()
        line = (token.map[0] + 1) if token.map else 0
        found.append(Block(language, textwrap.dedent("\n".join(lines)).strip() + "\n", line, options))
    return found


def script(page_blocks: list[Block]) -> str:
    """One Python script that runs a page's blocks in order (files are written beforehand)."""
    parts = ["import subprocess"]
    for block in page_blocks:
        if block.file is not None:
            continue
        if block.language == "python":
            parts.append(block.code)
        else:
            parts.append(f"subprocess.run(['bash', '-euo', 'pipefail', '-c', {block.code!r}], check=True)")
    return "\n".join(parts) + "\n"


def setup(app: Any) -> None:
    app.add_directive("runnable", Runnable)
