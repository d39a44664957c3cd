"""Chaos tests load the machine with faults and work: their processes run without coverage
measurement, as the load tests' do (the integration tests measure the same code)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _unmeasured(unmeasured_subprocesses: None) -> None:
    """Every chaos test's processes (``unmeasured_subprocesses``)."""
