"""Logs under CODITECT_HOME stay bounded: a process given a log file rotates it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from coditect_tasks.observability import logs


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def test_a_log_file_is_rotated_and_bounded(tmp_path: Path, restore_logging: None) -> None:
    path = tmp_path / "worker-1.log"
    logs.configure_logging("INFO", file=str(path), max_bytes=4000)
    log = structlog.get_logger("test")
    for index in range(500):
        log.info("a line of a long-running worker", index=index)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["worker-1.log", *(f"worker-1.log.{n}" for n in range(1, logs.LOG_FILE_BACKUPS + 1))]
    assert all((tmp_path / name).stat().st_size <= 4000 for name in files)
    last = json.loads(path.read_text().splitlines()[-1])  # JSON lines, the newest in the live file
    assert last["index"] == 499 and last["event"] == "a line of a long-running worker"
