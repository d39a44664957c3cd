"""The CLI reference: every command, argument and option, walked from the Typer app.

Typer 0.29 vendors click as ``typer._click``, which sphinx-click does not recognise; the walk is
click's own: ``list_commands``/``get_command`` for groups, ``get_help_record`` for options (the text
``--help`` prints), so each entry reads as the terminal shows it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import typer

from coditect_tasks.cli import cli

from .markdown import UNDOCUMENTED, code, prose, table

PROG = "coditect-tasks"


@dataclass(frozen=True)
class CommandDoc:
    path: str  #: the command line that runs it, ``coditect-tasks dag submit``
    usage: str
    help: str
    params: list[tuple[str, str]]  #: (the option or argument as typed, its help)
    group: bool


def root(app: typer.Typer = cli) -> Any:
    """The click command behind the Typer app."""
    return typer.main.get_command(app)


def commands(command: Any = None, parent: Any = None, name: str = PROG) -> Iterator[CommandDoc]:
    """Every command of the tree, depth first, each group before its commands."""
    command = root() if command is None else command
    ctx = command.make_context(name, [], parent=parent, resilient_parsing=True)
    usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
    group = hasattr(command, "list_commands")
    yield CommandDoc(ctx.command_path, usage, (command.help or "").strip(), list(_params(command, ctx)), group)
    if group:
        for sub in command.list_commands(ctx):
            child = command.get_command(ctx, sub)
            if child is not None and not child.hidden:
                yield from commands(child, ctx, sub)


def _params(command: Any, ctx: Any) -> Iterator[tuple[str, str]]:
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is not None and param.name != "help":
            yield record


def render() -> str:
    """The CLI reference as Markdown: one section per command."""
    parts = []
    for doc in commands():
        level = "#" * (2 + min(doc.path.count(" "), 2))
        parts.append(f"{level} {code(doc.path)}\n")
        parts.append(f"```text\n{doc.usage}\n```\n")
        if doc.help:
            parts.append(f"{prose(_first_paragraph(doc.help))}\n")
        if doc.params:
            parts.append(
                table(["option or argument", "meaning"], [(code(n), prose(h or UNDOCUMENTED)) for n, h in doc.params])
            )
    return "\n".join(parts)


def _first_paragraph(text: str) -> str:
    """Typer's help is the command's docstring: its paragraphs as prose."""
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))
