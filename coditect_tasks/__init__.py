"""coditect-tasks: a distributed task platform for software agents on Celery.

The public names load on first use (PEP 562), so that an agent module or a quick CLI
command such as ``dag validate`` does not pay for importing Celery and Redis. So does
``celery``, the app built from the ``CODITECT_*`` settings, where Celery's own command line
looks for it: ``celery -A coditect_tasks inspect ping`` works against a running cluster.
"""

from __future__ import annotations

import importlib as _importlib
import sys as _sys
import typing as _typing

if _typing.TYPE_CHECKING:
    from .agents import Agent, AgentCall, agent, load_agents
    from .app import CoditectApp, create_app
    from .client import AsyncClient, AsyncRun, Client, DagRun, submit
    from .dag.spawn import Spawn
    from .dag.spec import Dag, Node
    from .errors import CoditectError
    from .limits import Limit
    from .settings import Settings
    from .state import lock

_HOMES = {
    "Agent": ".agents",
    "AgentCall": ".agents",
    "agent": ".agents",
    "load_agents": ".agents",
    "CoditectApp": ".app",
    "create_app": ".app",
    "DagRun": ".client",
    "submit": ".client",
    "Client": ".client",
    "AsyncClient": ".client",
    "AsyncRun": ".client",
    "Dag": ".dag.spec",
    "Node": ".dag.spec",
    "Spawn": ".dag.spawn",
    "CoditectError": ".errors",
    "Limit": ".limits",
    "lock": ".state",
    "Settings": ".settings",
}

__all__ = [
    "Agent",
    "AgentCall",
    "AsyncClient",
    "AsyncRun",
    "Client",
    "CoditectApp",
    "CoditectError",
    "Dag",
    "DagRun",
    "Limit",
    "Node",
    "Settings",
    "Spawn",
    "agent",
    "create_app",
    "load_agents",
    "lock",
    "submit",
]


def __getattr__(name: str) -> _typing.Any:
    if name == "__version__":  # the installed distribution's, so it cannot drift from pyproject.toml
        from importlib.metadata import version

        globals()[name] = value = version("coditect-tasks")
        return value
    if name == "celery":
        from .app import app_from_env
        from .errors import CoditectError

        try:
            globals()[name] = app = app_from_env()
        except CoditectError as exc:  # Celery's CLI would print a traceback: one line, as our CLI does
            print(f"coditect-tasks: error: {exc}", file=_sys.stderr)
            raise SystemExit(exc.exit_code) from None
        return app
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
