"""Flower for operators, never without authentication.

Credentials come only from the environment (``CODITECT_FLOWER_BASIC_AUTH``, as
``user:password`` pairs separated by commas) and reach Flower through its own
``FLOWER_BASIC_AUTH`` variable, never the command line, where ``ps`` would show them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .errors import ConfigError

AUTH_VARIABLE = "CODITECT_FLOWER_BASIC_AUTH"


def basic_auth(environ: Mapping[str, str] | None = None) -> str:
    """The validated credentials; ``ConfigError`` if missing or malformed."""
    value = (os.environ if environ is None else environ).get(AUTH_VARIABLE, "").strip()
    if not value:
        raise ConfigError(
            AUTH_VARIABLE, "not set; Flower will not start without authentication (set it to user:password)"
        )
    for index, pair in enumerate(value.split(","), start=1):
        user, sep, password = pair.partition(":")
        if not (sep and user.strip() and password):
            raise ConfigError(AUTH_VARIABLE, f"entry {index} is not user:password")
    return value


def flower_argv(port: int, address: str) -> list[str]:
    """The ``celery flower`` arguments: no secrets, Celery events enabled by Flower itself."""
    return ["flower", f"--port={port}", f"--address={address}", "--enable-events", "--purge_offline_workers=30"]
