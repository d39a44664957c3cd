"""The state Redis of this process (the engine's pool): from explicit settings, else the environment."""

from __future__ import annotations

from typing import Any

import redis


def settings_for(settings: Any = None) -> Any:
    """``settings`` if given, else the environment's (attached to a running embedded stack)."""
    from ..embedded import attach
    from ..settings import Settings

    return settings if settings is not None else attach(Settings.from_env())


def client_for(settings: Any = None) -> redis.Redis:
    from ..engine.transitions import engine_for

    return engine_for(settings_for(settings).state_url).client
