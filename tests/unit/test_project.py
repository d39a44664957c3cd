"""The project's promises about itself: public API, README commands, CI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
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


def test_installing_the_package_registers_its_pytest_plugin(tmp_path: Path) -> None:
    """A project that only installed coditect-tasks sees the plugin's fixtures, with no conftest."""
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COVERAGE_PROCESS_CONFIG")}
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "--fixtures", "-p", "no:cacheprovider", "-p", "no:xdist"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    for fixture in ("coditect ", "coditect_worker", "coditect_redis", "coditect_agent_modules"):
        assert fixture in listed.stdout, listed.stdout[-2000:]
    assert "coditect_tasks/testing.py" in listed.stdout
