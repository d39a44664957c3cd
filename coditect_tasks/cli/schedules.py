"""``schedule``: runs of a DAG file at cron or interval fire times, fired by every ``scheduler``."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ..errors import ConfigError
from .context import emit_json, err, out, settings

if TYPE_CHECKING:
    from ..client import Client

schedule_cli = typer.Typer(help="Start a DAG at cron or interval fire times: add, list, pause, trigger, backfill.")

JSON = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]
NAME = Annotated[str, typer.Argument(help="The schedule's name.")]


def _client() -> Client:
    from ..client import Client

    return Client(settings())


@schedule_cli.command("add")
def schedule_add(
    name: NAME,
    file: Annotated[Path, typer.Argument(help="YAML or JSON DAG file each fire starts.")],
    cron: Annotated[str | None, typer.Option(help='Five cron fields, as "*/5 * * * *", in --tz.')] = None,
    every: Annotated[str | None, typer.Option(help="An interval: 2s, 5m, 1h, 1d.")] = None,
    tz: Annotated[str, typer.Option(help="The cron's time zone (Europe/Berlin).")] = "UTC",
    overlap: Annotated[
        str, typer.Option(help="While the previous run runs: skip, buffer-one, allow or cancel-other.")
    ] = "skip",
    catchup: Annotated[
        float, typer.Option(min=0, help="Seconds a fire missed while no scheduler ran is still made up.")
    ] = 60.0,
    jitter: Annotated[float, typer.Option(min=0, help="Seconds a fire's run may start after its time.")] = 0.0,
    params: Annotated[str | None, typer.Option(help="A JSON object put into every node's params.")] = None,
    as_json: JSON = False,
) -> None:
    """Add a schedule: the first fire time after now, and each one after it, starts FILE once."""
    from ..dag.spec import Dag

    given = _params(params)
    dag = Dag.load(file, max_bytes=settings().max_dag_bytes)
    with _client() as client:
        added = client.schedules.add(
            name, dag, cron=cron, every=every, tz=tz, overlap=overlap, catchup=catchup, jitter=jitter, params=given
        )
    if as_json:
        emit_json(added)
    else:
        out.print(f"{name}: {added['when']}, next fire {_when(added['next_fire'])}")


def _params(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("--params", f"not JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(value, dict):
        raise ConfigError("--params", "must be a JSON object")
    return value


@schedule_cli.command("list")
def schedule_list(as_json: JSON = False) -> None:
    """Every schedule: when it fires, its next fire time and its latest run."""
    with _client() as client:
        found = client.schedules.all()
    if as_json:
        emit_json({"schedules": found})
        return
    if not found:
        out.print("no schedules: add one with `coditect-tasks schedule add NAME DAG_FILE --every 5m`")
        return
    view = Table(title="schedules")
    for column in ("schedule", "fires", "overlap", "next fire", "latest run", "state"):
        view.add_column(column)
    for item in found:
        state = "[yellow]paused[/yellow]" if item["paused"] else "active"
        if item["buffered"]:
            state += f", holding {_when(item['buffered'])}"
        view.add_row(
            item["name"],
            item["when"],
            item["overlap"],
            _when(item["next_fire"]),
            (item["last_run"] or "-")[:12],
            state,
        )
    out.print(view)


def _when(iso_time: str | None) -> str:
    """A fire time in local time, with how far off it is."""
    if iso_time is None:
        return "-"
    moment = datetime.fromisoformat(iso_time)
    seconds = moment.timestamp() - datetime.now().timestamp()
    off = f"in {seconds:.0f} s" if seconds >= 0 else f"{-seconds:.0f} s ago"
    return f"{moment.astimezone():%Y-%m-%d %H:%M:%S} ({off})"


@schedule_cli.command("pause")
def schedule_pause(name: NAME, as_json: JSON = False) -> None:
    """Fire no more until resumed (the fire times in between are not made up)."""
    with _client() as client:
        _show(client.schedules.pause(name), as_json)


@schedule_cli.command("resume")
def schedule_resume(name: NAME, as_json: JSON = False) -> None:
    """Fire again, from the first fire time after now."""
    with _client() as client:
        _show(client.schedules.resume(name), as_json)


def _show(item: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(item)
    else:
        state = "paused" if item["paused"] else f"next fire {_when(item['next_fire'])}"
        out.print(f"{item['name']}: {state}")


@schedule_cli.command("delete")
def schedule_delete(name: NAME) -> None:
    """Forget a schedule (its runs stay)."""
    from ..errors import ScheduleNotFoundError

    with _client() as client:
        if not client.schedules.delete(name):
            raise ScheduleNotFoundError(name)
    err.print(f"{name}: deleted")


@schedule_cli.command("trigger")
def schedule_trigger(name: NAME, as_json: JSON = False) -> None:
    """Start a run now, whatever the overlap policy."""
    with _client() as client:
        run = client.schedules.trigger(name)
    if as_json:
        emit_json({"schedule": name, "run_id": run.id})
    else:
        out.print(run.id)


@schedule_cli.command("backfill")
def schedule_backfill(
    name: NAME,
    start: Annotated[str, typer.Option("--from", help="ISO-8601 time: the first fire time counted.")],
    end: Annotated[str, typer.Option("--to", help="ISO-8601 time: fire times before it are counted.")],
    as_json: JSON = False,
) -> None:
    """Start a run for each fire time in the span (one that had a run keeps it), oldest first."""
    with _client() as client:
        started = client.schedules.backfill(name, start, end)
    if as_json:
        emit_json({"schedule": name, "runs": started})
        return
    for item in started:
        out.print(f"{item['fire_time']}  {item['run_id']}")
    err.print(f"{len(started)} fire time(s)")
