"""coditect-tasks: a distributed task platform for software agents on Celery."""

from __future__ import annotations

from .agents import Agent, AgentCall, agent, load_agents
from .app import CoditectApp, create_app
from .errors import CoditectError
from .settings import Settings

__all__ = [
    "Agent",
    "AgentCall",
    "CoditectApp",
    "CoditectError",
    "Settings",
    "agent",
    "create_app",
    "load_agents",
]
