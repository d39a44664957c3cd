"""The project's promises about itself: public API, README commands, CI."""

from __future__ import annotations

import re
from pathlib import Path

import coditect_tasks

ROOT = Path(__file__).resolve().parents[2]


def test_public_api_is_exactly_what_all_lists() -> None:
    public = {name for name in dir(coditect_tasks) if not name.startswith("_")} - {"annotations"}
    modules = {name for name in public if type(getattr(coditect_tasks, name)).__name__ == "module"}
    assert public - modules == set(coditect_tasks.__all__)


def test_the_version_is_the_installed_distributions() -> None:
    import tomllib

    assert coditect_tasks.__version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, flags=re.S)
    demo, tests = blocks[0], blocks[1]
    assert demo.endswith("coditect-tasks demo")
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_every_module_reads_in_one_sitting() -> None:
    """About 400 lines at most (420, formatted): a module that grows past it holds more than one concept."""
    long = {
        str(path.relative_to(ROOT)): n
        for path in (ROOT / "coditect_tasks").rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 420
    }
    assert not long, f"split these modules: {long}"
