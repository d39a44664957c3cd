"""The documentation site, built once per test run (``-W --keep-going -n``).

The first test process that needs it builds it; the others (xdist) read that build.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import missing

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))  # the site's own extension, coditect_docs


@dataclass(frozen=True)
class Site:
    html: Path
    returncode: int
    log: str
    seconds: float


def _build(out: Path) -> Site:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html", str(DOCS), str(out / "html")],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        # not under coverage (--cov measures subprocesses): a traced Sphinx took twice as long,
        # and the code it imports is measured where the tests run it
        env={k: v for k, v in os.environ.items() if k != "COVERAGE_PROCESS_CONFIG"},
    )
    return Site(out / "html", proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """The site as ``coditect-tasks docs`` and CI build it, in a fresh output folder: built once for
    the whole run, the first xdist process to need it building it for the others (a file lock beside
    their temporary folders: the browser and reference tests are in modules of their own)."""
    if shutil.which("dot") is None:
        missing("Graphviz's dot is not installed (apt-get install graphviz): the site's diagrams need it")
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out, record = shared / "docs-site", shared / "docs-site.json"
    with (shared / "docs-site.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            built = _build(out)
            record.write_text(json.dumps({**dataclasses.asdict(built), "html": str(built.html)}))
        data = json.loads(record.read_text())
    return Site(Path(data["html"]), data["returncode"], data["log"], data["seconds"])
