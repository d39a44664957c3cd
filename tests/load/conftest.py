"""Load tests judge speed: their processes run without coverage measurement, which slows them."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _unmeasured_subprocesses(monkeypatch: pytest.MonkeyPatch) -> None:
    """coverage's ``patch = subprocess`` reaches child processes through this variable."""
    monkeypatch.delenv("COVERAGE_PROCESS_CONFIG", raising=False)
