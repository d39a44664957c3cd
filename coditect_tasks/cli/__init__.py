"""The ``coditect-tasks`` command: one thin module per command group.

Commands parse, call one function of the library, and render. User errors
(``CoditectError``) become one line on stderr and a non-zero exit code; usage
errors are the usage line and one error line with exit code 2; tracebacks are for
bugs only. ``--json`` output is exactly one JSON document on stdout, with anything
for humans on stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer

from ..errors import CoditectError
from . import bench, chaos, dag, demo, events, history, limits, load, schedules, services, workers
from .context import err
from .docs import docs as docs_command

cli = typer.Typer(
    name="coditect-tasks",
    help="Run software agents as Celery workers and orchestrate them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cli.command()(workers.worker)
cli.add_typer(workers.agents_cli, name="agents")
cli.command()(workers.up)
cli.command()(workers.health)
cli.command()(demo.demo)
cli.command("docs")(docs_command)
cli.add_typer(dag.dag_cli, name="dag")
cli.add_typer(history.history_cli, name="history")
cli.add_typer(limits.limits_cli, name="limits")
cli.add_typer(events.event_cli, name="event")
cli.add_typer(schedules.schedule_cli, name="schedule")
cli.command()(bench.bench)
cli.command()(chaos.chaos)
cli.command()(load.load)
cli.command()(services.exporter)
cli.command()(services.flower)
cli.command()(services.recorder)
cli.command()(services.scheduler)
cli.command()(services.serve)
cli.command("upgrade-keys")(services.upgrade_keys)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the CLI and turn user errors into one line and an exit code."""
    command = typer.main.get_command(cli)
    os.umask(0o077)  # CODITECT_HOME holds passwords and run data: what we write is private to this user
    try:
        args = list(argv) if argv is not None else None
        code = command.main(args=args, prog_name="coditect-tasks", standalone_mode=False)
        return code if isinstance(code, int) else 0  # typer returns typer.Exit's code here
    except CoditectError as exc:
        err.print(f"coditect-tasks: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:  # typer's (vendored click's) usage errors: usage line + one error line
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"Error: {exc.format_message()}", markup=False, highlight=False)
        return int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        return 130


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())
