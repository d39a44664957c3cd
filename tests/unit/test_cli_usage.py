"""Every usage error of the installed command is click's usage line, one error line and exit 2.

Runs the real console script (not the typer object in-process), so a change of CLI library
or of how errors are caught shows up exactly as a user would see it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import typer

from coditect_tasks.cli import cli

COMMAND = str(Path(sys.executable).parent / "coditect-tasks")

# (argv, what is wrong). Every leaf command has an unknown option; those with a required
# argument or option miss it; those with a typed option get a bad value.
BAD_USAGES: list[tuple[str, str]] = [
    ("nosuch", "No such command 'nosuch'"),
    ("dag nosuch", "No such command 'nosuch'"),
    ("worker --bogus", "No such option: --bogus"),
    ("worker", "Missing option '--agents'"),
    ("worker --agents echo --concurrency many", "Invalid value for '--concurrency'"),
    ("agents --bogus", "No such option: --bogus"),
    ("agents extra", "No such command 'extra'"),
    ("agents ramp --bogus", "No such option: --bogus"),
    ("agents ramp", "Missing argument 'agent'"),
    ("agents ramp coder --percent 10", "Missing option '--to'"),
    ("agents ramp coder --to 2 --percent 150", "Invalid value for '--percent'"),
    ("agents rollback --bogus", "No such option: --bogus"),
    ("agents rollback", "Missing argument 'agent'"),
    ("up --bogus", "No such option: --bogus"),
    ("up --workers x", "Invalid value for '--workers'"),
    ("demo --bogus", "No such option: --bogus"),
    ("demo --items 0", "Invalid value for '--items'"),
    ("docs --bogus", "No such option: --bogus"),
    ("docs --port 70000", "Invalid value for '--port'"),
    ("dag validate --bogus", "No such option: --bogus"),
    ("dag validate", "Missing argument 'file'"),
    ("schedule nosuch", "No such command 'nosuch'"),
    ("schedule add --bogus", "No such option: --bogus"),
    ("schedule add", "Missing argument 'name'"),
    ("schedule add nightly", "Missing argument 'file'"),
    ("schedule add nightly dag.yaml --catchup -1", "Invalid value for '--catchup'"),
    ("schedule add nightly dag.yaml --jitter soon", "Invalid value for '--jitter'"),
    ("schedule list --bogus", "No such option: --bogus"),
    ("schedule list extra", "unexpected extra argument(s) (extra)"),
    ("schedule pause --bogus", "No such option: --bogus"),
    ("schedule pause", "Missing argument 'name'"),
    ("schedule resume --bogus", "No such option: --bogus"),
    ("schedule resume", "Missing argument 'name'"),
    ("schedule delete --bogus", "No such option: --bogus"),
    ("schedule delete", "Missing argument 'name'"),
    ("schedule trigger --bogus", "No such option: --bogus"),
    ("schedule trigger", "Missing argument 'name'"),
    ("schedule backfill --bogus", "No such option: --bogus"),
    ("schedule backfill nightly --to 2026-01-02", "Missing option '--from'"),
    ("scheduler --bogus", "No such option: --bogus"),
    ("scheduler extra", "unexpected extra argument(s) (extra)"),
    ("dag submit --bogus", "No such option: --bogus"),
    ("dag submit", "Missing argument 'file'"),
    ("dag submit x.yaml --priority 10", "Invalid value for '--priority'"),
    ("dag submit dag.yaml --timeout soon", "Invalid value for '--timeout'"),
    ("dag status --bogus", "No such option: --bogus"),
    ("dag status", "Missing argument 'run_id'"),
    ("dag list --bogus", "No such option: --bogus"),
    ("dag list --limit zero", "Invalid value for '--limit'"),
    ("dag cancel --bogus", "No such option: --bogus"),
    ("dag cancel", "Missing argument 'run_id'"),
    ("dag retry --bogus", "No such option: --bogus"),
    ("dag retry", "Missing argument 'run_id'"),
    ("dag events --bogus", "No such option: --bogus"),
    ("dag events", "Missing argument 'run_id'"),
    ("serve --bogus", "No such option: --bogus"),
    ("serve --port 0", "Invalid value for '--port'"),
    ("dag graph --bogus", "No such option: --bogus"),
    ("dag graph", "Missing argument 'target'"),
    ("bench --bogus", "No such option: --bogus"),
    ("bench --repeats 0", "Invalid value for '--repeats'"),
    ("bench --footprint --observability", "choose one of --observability and --footprint"),
    ("chaos --bogus", "No such option: --bogus"),
    ("chaos --faults worker-kill,meteor", "Invalid value for '--faults': unknown fault(s) meteor; known: worker-kill,"),
    ("chaos --target moon", "Invalid value for '--target': 'moon' is not embedded or settings"),
    ("chaos --redis-pid 12", "Invalid value for '--target': --compose and --redis-pid act on a deployment"),
    ("chaos --failover -1", "Invalid value for '--failover'"),
    ("load --bogus", "No such option: --bogus"),
    ("load", "Missing argument 'SCENARIO'"),
    ("load steady --scale abc", "Invalid value for '--scale'"),
    ("load steady --rate fast", "Invalid value for '--rate'"),
    ("exporter --bogus", "No such option: --bogus"),
    ("exporter --port 70000", "Invalid value for '--port'"),
    ("flower --bogus", "No such option: --bogus"),
    ("flower --port x", "Invalid value for '--port'"),
    ("recorder --bogus", "No such option: --bogus"),
    ("upgrade-keys --bogus", "No such option: --bogus"),
    ("upgrade-keys now", "Got unexpected extra argument(s) (now)"),
    ("health --bogus", "No such option: --bogus"),
    ("health --max-age 0", "Invalid value for '--max-age'"),
    ("history nosuch", "No such command 'nosuch'"),
    ("history prune --bogus", "No such option: --bogus"),
    ("limits --bogus", "No such option: --bogus"),
    ("event send --bogus", "No such option: --bogus"),
    ("event send", "Missing argument 'name'"),
    ("dag approve --bogus", "No such option: --bogus"),
    ("dag approve run-1", "Missing argument 'node'"),
    ("limits set --bogus", "No such option: --bogus"),
    ("limits set", "Missing argument 'name'"),
    ("limits set openai --concurrency many", "Invalid value for '--concurrency'"),
    ("limits unset --bogus", "No such option: --bogus"),
    ("limits unset", "Missing argument 'name'"),
    ("history prune", "Missing option '--older-than'"),
    ("history prune --older-than soon", "Invalid value for '--older-than'"),
]


def _leaf_commands(command: object, path: tuple[str, ...] = ()) -> set[str]:
    children = getattr(command, "commands", None)
    if not children:
        return {" ".join(path)}
    return set().union(*(_leaf_commands(child, (*path, name)) for name, child in children.items()))


def _run(argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COMMAND, *argv.split()], capture_output=True, text=True, timeout=60)


#: Runs each usage (JSON on stdin) through the console script's own entry point, in one interpreter
#: rather than one each (60 starts cost half a minute of CPU), its output caught at the file
#: descriptors as a terminal would see it; writes [[exit code, stdout, stderr], ...] to argv[1].
IN_ONE_PROCESS = r"""
import json, os, sys, tempfile
from coditect_tasks.cli import main_exit
report, results = sys.argv[1], []
for argv in json.load(sys.stdin):
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        code = 0
        try:
            sys.argv = ["coditect-tasks", *argv.split()]
            main_exit()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
        out.seek(0)
        err.seek(0)
        results.append([code, out.read().decode(), err.read().decode()])
with open(report, "w") as handle:
    json.dump(results, handle)
"""


def _run_all(argvs: list[str], tmp_path: Path) -> list[subprocess.CompletedProcess[str]]:
    """Each of ``argvs`` as the console script runs it (``IN_ONE_PROCESS``)."""
    report = tmp_path / "usages.json"
    child = subprocess.run(
        [sys.executable, "-c", IN_ONE_PROCESS, str(report)],
        input=json.dumps(argvs),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    return [
        subprocess.CompletedProcess(argv, code, out, err)
        for argv, (code, out, err) in zip(argvs, json.loads(report.read_text()), strict=True)
    ]


def test_every_command_has_its_bad_usages_listed() -> None:
    leaves = _leaf_commands(typer.main.get_command(cli))
    covered = {argv for argv, _ in BAD_USAGES}
    missing = sorted(leaf for leaf in leaves if f"{leaf} --bogus" not in covered)
    assert not missing, f"add bad usages for: {missing}"


#: Usages also run through the installed console script itself, one process each: the same
#: answers there prove the one-process run above stands for it.
THROUGH_THE_SCRIPT = ("nosuch", "worker", "dag submit x.yaml --priority 10", "agents extra")


def test_every_bad_usage_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    results = dict(zip(BAD_USAGES, _run_all([argv for argv, _ in BAD_USAGES], tmp_path), strict=True))
    with ThreadPoolExecutor(max_workers=4) as pool:
        scripted = dict(zip(THROUGH_THE_SCRIPT, pool.map(_run, THROUGH_THE_SCRIPT), strict=True))
    for argv, result in scripted.items():
        alone = next(r for (a, _), r in results.items() if a == argv)
        assert (result.returncode, result.stdout, result.stderr) == (alone.returncode, alone.stdout, alone.stderr)
    wrong = []
    for (argv, message), result in results.items():
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("Error: ")]
        ok = (
            result.returncode == 2
            and "Traceback" not in result.stderr
            and lines[:1]
            and lines[0].startswith("Usage: coditect-tasks")
            and len(errors) == 1
            and message in errors[0]
            and result.stdout == ""
        )
        if not ok:
            wrong.append(f"`coditect-tasks {argv}` exited {result.returncode}:\n{result.stderr[-800:]}")
    assert not wrong, "\n\n".join(wrong)
