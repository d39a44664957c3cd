"""coditect-tasks: a distributed task platform for software agents on Celery."""

from __future__ import annotations

from .agents import Agent, AgentCall, agent, load_agents
from .app import CoditectApp, create_app
from .dag.run import DagRun, submit
from .dag.spec import Dag, Node
from .errors import CoditectError
from .settings import Settings

__all__ = [
    "Agent",
    "AgentCall",
    "CoditectApp",
    "CoditectError",
    "Dag",
    "DagRun",
    "Node",
    "Settings",
    "agent",
    "create_app",
    "load_agents",
    "submit",
]
