"""``event send``: the events waiting nodes wait for (``dag.wait``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from ..errors import ConfigError
from .context import emit_json, out, settings

event_cli = typer.Typer(help="Send the events that waiting nodes wait for.", no_args_is_help=True)


def _data(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("--data", f"not JSON: {exc}") from None


@event_cli.command("send")
def send(
    name: Annotated[str, typer.Argument(help="The event's name, e.g. ci.finished.")],
    key: Annotated[str, typer.Option(help="Its key: only waits of this name and key take it.")] = "",
    data: Annotated[str, typer.Option(help="Its data as JSON: the waiting node's result.")] = "null",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Send an event: every node waiting for its name and key succeeds with its data now."""
    from ..client import Client

    value = _data(data)
    with Client(settings()) as client:
        resolved = client.send_event(name, key=key, data=value)
    if as_json:
        emit_json({"resolved": resolved})
    else:
        out.print(f"{name} ({key or 'no key'}): resolved {resolved} waiting node(s)")
