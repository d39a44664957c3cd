"""``limits``: see and change the global concurrency and rate limits while the platform runs."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from .context import emit_json, out, settings

limits_cli = typer.Typer(
    help="Show the limits (in use, waiting, units in the window); change them without a restart.",
    invoke_without_command=True,
)

JSON = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]


@limits_cli.callback()
def limits(ctx: typer.Context, as_json: JSON = False) -> None:
    """Every limit and, per key, the nodes holding it, waiting for it and the units of its rate window."""
    if ctx.invoked_subcommand is not None:
        return
    from ..client import Client

    with Client(settings()) as client:
        document = client.limits()
    if as_json:
        emit_json({"limits": document})
        return
    view = Table(title="limits")
    for column in ("limit", "definition", "key", "in use", "waiting", "units", "oldest wait"):
        view.add_column(column, justify="right" if column in ("in use", "waiting", "units", "oldest wait") else "left")
    for limit in document:
        rows = limit["keys"] or [{"key": "", "in_use": 0, "waiting": 0, "units": 0, "oldest_wait": 0}]
        for index, key in enumerate(rows):
            view.add_row(
                limit["name"] if index == 0 else "",
                _definition(limit) if index == 0 else "",
                key["key"] or "-",
                str(key["in_use"]),
                f"[yellow]{key['waiting']}[/yellow]" if key["waiting"] else "0",
                f"{key['units']:g}",
                f"{key['oldest_wait']:.1f} s" if key["waiting"] else "-",
            )
    out.print(view if document else "no limits: declare them on an agent (limits=[...]) or `limits set`")


def _definition(limit: dict[str, Any]) -> str:
    from ..limits import Limit

    text = Limit.from_json(limit["name"], limit["definition"]).describe()
    return text + (" [yellow](changed)[/yellow]" if limit["changed"] else "")


@limits_cli.command("set")
def set_limit(
    name: Annotated[str, typer.Argument(help="The limit's name (a new name defines a limit).")],
    concurrency: Annotated[int | None, typer.Option(help="Nodes holding it at once.")] = None,
    rate: Annotated[float | None, typer.Option(help="Units started per --per seconds.")] = None,
    per: Annotated[float | None, typer.Option(help="The rate's window in seconds.")] = None,
    as_json: JSON = False,
) -> None:
    """Change a limit now, over its declared definition: it holds from the next dispatch on."""
    from ..client import Client

    with Client(settings()) as client:
        defined = client.set_limit(name, concurrency=concurrency, rate=rate, per=per)
    if as_json:
        emit_json({"name": name, "definition": defined})
    else:
        out.print(f"{name}: {_definition({'name': name, 'definition': defined, 'changed': True})}")


@limits_cli.command("unset")
def unset_limit(
    name: Annotated[str, typer.Argument(help="The limit's name.")],
    as_json: JSON = False,
) -> None:
    """Drop the change `limits set` made: the declared definition holds again (or the limit goes)."""
    from ..client import Client

    with Client(settings()) as client:
        defined = client.unset_limit(name)
    if as_json:
        emit_json({"name": name, "definition": defined})
    elif defined is None:
        out.print(f"{name}: gone (no code declares it)")
    else:
        out.print(f"{name}: {_definition({'name': name, 'definition': defined, 'changed': False})}")
