"""Load tests judge speed: their processes run without coverage measurement, which slows them."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _unmeasured(unmeasured_subprocesses: None) -> None:
    """Every load test's processes (``unmeasured_subprocesses``)."""
