"""The CLI as a user meets it: bad configuration, the demo, and the local stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import ROOT, run_cli, wait_for

pytestmark = pytest.mark.integration


def _one_clear_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("coditect-tasks: error: ")
    return lines[0]


def test_unreachable_broker_fails_within_fifteen_seconds(tmp_path: Path) -> None:
    result = run_cli(
        ["worker", "--agents", "echo"],
        {"CODITECT_HOME": str(tmp_path), "CODITECT_BROKER_URL": "redis://127.0.0.1:1/0"},
    )
    line = _one_clear_line(result.stderr)
    assert result.returncode == 3
    assert "cannot reach redis://127.0.0.1:1/0" in line
    assert result.seconds < 15


UNREACHABLE = {"CODITECT_BROKER_URL": "redis://127.0.0.1:1/0"}


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["worker", "--agents", "echo,coder"], UNREACHABLE, "unknown agent 'coder' (known: echo, emit, flaky,"),
        (["worker", "--agents", "echo", "--pool", "gevent"], UNREACHABLE, "--pool: 'gevent' is not one of"),
        (
            ["worker", "--agents", "echo", "--pool", "threads"],
            UNREACHABLE,
            "--pool: 'threads' is not one of prefork: only a process pool can stop a call at its time limit",
        ),
        (["agents"], {"CODITECT_BROKER_URL": "redis://localhost:notaport/0"}, "CODITECT_BROKER_URL: malformed URL"),
        (["agents"], {"CODITECT_BROKER_URL": "localhost:6379"}, "CODITECT_BROKER_URL: unsupported scheme"),
        (["agents"], {}, "CODITECT_BROKER_URL: not set and no embedded stack is running"),
        (["agents"], {"CODITECT_AGENT_MODULES": "nope.agents"}, "cannot import 'nope.agents'"),
        (["up", "--agents", "coder"], {}, "unknown agent 'coder'"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_two(
    tmp_path: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    result = run_cli(args, {"CODITECT_HOME": str(tmp_path), **env})
    assert expected in _one_clear_line(result.stderr)
    assert result.returncode == 2
    assert result.stdout == ""
    assert not (tmp_path / "stack.json").exists()


def _processes_with_home(home: Path) -> list[int]:
    """Pids whose environment or command line mentions ``home`` (our children)."""
    found = []
    marker = str(home.resolve()).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes() or marker in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_demo_json_runs_the_workflow_and_stops_everything(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run_cli(["demo", "--json", "--items", "3"], {"CODITECT_HOME": str(home)}, timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "succeeded"
    assert [s["step"] for s in data["steps"]] == ["plan", "review", "summarize"]
    assert data["steps"][0]["result"] == ["parse", "lint", "test"]
    reviews = data["result"]["upstream"]["review"]
    assert [r["params"]["item"] for r in reviews] == ["parse", "lint", "test"]
    assert len(data["workers"]) == 2
    assert _processes_with_home(home) == []


def test_up_serves_agents_until_sigterm_and_leaves_nothing_behind(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODITECT_")}
    env.update({"CODITECT_HOME": str(home), "PYTHONPATH": str(ROOT)})
    up = subprocess.Popen(
        [sys.executable, "-m", "coditect_tasks", "up", "--workers", "1", "--concurrency", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_for(lambda: (home / "stack.json").exists() or up.poll() is not None, 60, "the stack to come up")
        assert up.poll() is None, up.stderr.read() if up.stderr else ""
        assert oct((home / "stack.json").stat().st_mode & 0o777) == "0o600"
        password = json.loads((home / "stack.json").read_text())["broker_url"].split(":")[2].split("@")[0]
        command_lines = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in _processes_with_home(home)]
        assert command_lines and not any(password.encode() in line for line in command_lines)
        assert oct(home.stat().st_mode & 0o777) == "0o700"
        wait_for(lambda: list(home.rglob("appendonly*")), 10, "the AOF to be written")
        loose = {str(f.relative_to(home)): oct(f.stat().st_mode & 0o777) for f in home.rglob("*") if f.is_file()}
        assert loose and all(mode == "0o600" for mode in loose.values()), loose

        listed = run_cli(["agents", "--json"], {"CODITECT_HOME": str(home)})
        assert listed.returncode == 0, listed.stderr
        agents = json.loads(listed.stdout)["agents"]
        assert {name for name, a in agents.items() if a["workers"]} == {
            "echo",
            "emit",
            "sleep",
            "flaky",
            "noop",
            "plan",
            "talk",
        }

        up.send_signal(signal.SIGTERM)
        stdout, _ = up.communicate(timeout=30)
    finally:
        if up.poll() is None:  # a failed check: SIGTERM first, so up stops what it started (nothing outlives a test)
            up.terminate()
            try:
                up.wait(timeout=30)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
    assert up.returncode == 0
    assert "export CODITECT_BROKER_URL=redis://:" in stdout
    assert "@127.0.0.1:" in stdout
    assert not (home / "stack.json").exists()
    assert _processes_with_home(home) == []
