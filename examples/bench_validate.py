"""How long ``coditect-tasks dag validate`` takes on a 10,000-node YAML chain (issue 11's bar: < 1 s).

Run: ``.venv/bin/python examples/bench_validate.py [--nodes N] [--repeats R]``. Prints the median
wall time of the whole command (interpreter start, imports, parse, validation), and, for
scale on a shared machine, the median time PyYAML with libyaml takes only to parse the file.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_chain(path: Path, nodes: int) -> None:
    lines = ["name: big", "nodes:"]
    for i in range(nodes):
        lines.append(f"  - id: n{i}\n    agent: echo\n    params: {{text: hello {i}}}")
        if i:
            lines.append(f"    after: [n{i - 1}]")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    command = shutil.which("coditect-tasks", path=str(Path(sys.executable).parent)) or "coditect-tasks"
    with tempfile.TemporaryDirectory() as tmp:
        dag = Path(tmp) / "big.yaml"
        write_chain(dag, args.nodes)
        subprocess.run([command, "dag", "validate", str(dag)], check=True, capture_output=True)  # warm caches
        walls = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            subprocess.run([command, "dag", "validate", str(dag)], check=True, capture_output=True)
            walls.append(time.perf_counter() - started)
        reference = _pyyaml_parse(dag, args.repeats)
    print(f"dag validate, {args.nodes} nodes: median {statistics.median(walls):.2f} s of {args.repeats} runs")
    if reference is not None:
        print(f"PyYAML + libyaml parsing the same file alone: median {reference:.2f} s")


def _pyyaml_parse(path: Path, repeats: int) -> float | None:
    try:
        import yaml
    except ImportError:
        return None
    text = path.read_text()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


if __name__ == "__main__":
    main()
