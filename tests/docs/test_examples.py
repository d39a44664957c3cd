"""The tutorial's and the how-tos' runnable code blocks run as written, against a real Redis and
real worker processes (the suite's session Redis and ``worker_factory``), one script per page."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from coditect_docs import runnable

from coditect_tasks.settings import Settings
from tests.conftest import ROOT, WorkerFactory

from .conftest import DOCS

GUIDES = sorted([*DOCS.glob("tutorial/*.md"), *DOCS.glob("how-to/*.md")])
PAGES = [page for page in GUIDES if runnable.blocks(page)]


def _environment(settings: Settings, folder: Path, modules: str) -> dict[str, str]:
    """What a reader's shell would have: the stack's variables, the venv's commands on PATH."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CODITECT_", "PYTEST_"))}
    return {
        **base,
        **settings.environment(),
        "CODITECT_AGENT_MODULES": modules,
        "PYTHONPATH": f"{folder}{os.pathsep}{ROOT}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}",
    }


def _reader(page: Path, root: Path) -> Path:
    """A reader's folder for ``page``, holding the files its blocks write and the script of the rest."""
    blocks = runnable.blocks(page)
    folder = root / page.relative_to(DOCS).with_suffix("").as_posix().replace("/", "-")
    folder.mkdir(parents=True)
    for block in blocks:
        if block.file is not None:
            (folder / block.file).write_text(block.code)
    (folder / "page.py").write_text(runnable.script(blocks))
    return folder


def _agent_modules(folder: Path) -> list[str]:
    """The agent modules a page wrote (a test module or conftest is not one)."""
    return [p.stem for p in folder.glob("*.py") if p.stem != "page" and not p.stem.startswith(("test_", "conftest"))]


@pytest.mark.integration
def test_every_runnable_page_runs(settings: Settings, worker_factory: WorkerFactory, tmp_path: Path) -> None:
    """Each page's blocks run as one script, in its own folder; one worker pool serves the agents
    every page asks for (a worker per page would cost more than the pages themselves)."""
    folders = {page: _reader(page, tmp_path) for page in PAGES}
    modules = ",".join([*(m for f in folders.values() for m in _agent_modules(f)), "workers.examples"])
    path = os.pathsep.join([*map(str, folders.values()), str(ROOT)])
    agents = sorted({agent for page in PAGES for block in runnable.blocks(page) for agent in block.workers})
    worker_factory(agents, concurrency=2, extra_env={"PYTHONPATH": path, "CODITECT_AGENT_MODULES": modules})

    def read(page: Path) -> str | None:
        """What is wrong with ``page``'s script, or None: the pages run side by side, as readers would."""
        folder = folders[page]
        proc = subprocess.run(
            [sys.executable, "page.py"],
            cwd=folder,
            env=_environment(settings, folder, ",".join([*_agent_modules(folder), "workers.examples"])),
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
        )
        return (
            None if proc.returncode == 0 else f"{page.relative_to(DOCS)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )

    with ThreadPoolExecutor(max_workers=3) as pool:
        failures = [failure for failure in pool.map(read, folders) if failure]
    assert not failures, "\n\n".join(failures)
    assert len(PAGES) >= 5, f"only {len(PAGES)} pages have runnable blocks"


def test_every_python_block_of_the_tutorial_runs() -> None:
    """The tutorial is the first code a newcomer copies: none of its Python goes untested."""
    untested = []
    for page in DOCS.glob("tutorial/*.md"):
        for line_number, line in enumerate(page.read_text().splitlines(), 1):
            if line.strip() in ("```python", "```py", "```{code-block} python"):
                untested.append(f"{page.name}:{line_number}")
    assert not untested, f"mark these blocks {{runnable}}: {untested}"


def test_the_script_of_a_page_runs_its_blocks_in_order(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# p\n\n```{runnable} python\n:file: m.py\nX = 1\n```\n\n```{runnable} python\n:workers: a, b\n"
        "from m import X\n```\n\n```{runnable} sh\necho hi\n```\n\n```python\nnot run\n```\n"
    )
    blocks = runnable.blocks(page)
    assert [(b.language, b.file, b.workers) for b in blocks] == [
        ("python", "m.py", []),
        ("python", None, ["a", "b"]),
        ("sh", None, []),
    ]
    script = runnable.script(blocks)
    assert "X = 1" not in script and script.index("from m import X") < script.index("echo hi")
