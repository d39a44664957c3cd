"""Small Markdown builders shared by the reference generators."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def cell(text: object) -> str:
    """``text`` as one table cell: no line breaks, no bare pipes."""
    return " ".join(str(text).split()).replace("|", "\\|")


def prose(text: object) -> str:
    """``text`` as Markdown prose: an angle bracket stays a character, not an HTML tag."""
    return str(text).replace("<", "\\<")


#: What a generated entry says where the code gives no help text or comment.
UNDOCUMENTED = "(undocumented)"


def code(text: object) -> str:
    """``text`` as inline code, whatever backticks it holds."""
    value = str(text)
    fence = "``" if "`" in value else "`"
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-style table (MyST parses it)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
