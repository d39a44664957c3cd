"""The state Redis of this process (the engine's pool): from explicit settings, else the environment."""

from __future__ import annotations

from typing import Any

import redis


def client_for(settings: Any = None) -> redis.Redis:
    from ..dag.engine import engine_for
    from ..embedded import attach
    from ..settings import Settings

    found = settings if settings is not None else attach(Settings.from_env())
    return engine_for(found.state_url).client
