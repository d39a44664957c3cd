"""The documentation site, built once per test process that needs it (``-W --keep-going -n``).

Tests that read the built site share the ``docs`` xdist group, so one process builds it once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))  # the site's own extension, coditect_docs


@dataclass(frozen=True)
class Site:
    html: Path
    returncode: int
    log: str
    seconds: float


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "site" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("docs"))


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The site as ``coditect-tasks docs`` and CI build it, in a fresh output folder."""
    if shutil.which("dot") is None:
        message = "Graphviz's dot is not installed (apt-get install graphviz): the site's diagrams need it"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must install it")
        pytest.skip(message)
    out = tmp_path_factory.mktemp("site")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html", str(DOCS), str(out / "html")],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    yield Site(out / "html", proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)
