"""The lock file stays true to pyproject.toml: every declared dependency bounded and pinned within
its bounds. (Lint and types are not tests: ``make lint`` runs them, from ``make check`` and ``.ci/run``.)"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def test_lock_file_pins_every_dependency_within_its_bounds() -> None:
    """constraints.txt must pin each declared dependency (extras included) to a version pyproject allows."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(text) for text in project["dependencies"]]
    declared += [Requirement(text) for extra in project["optional-dependencies"].values() for text in extra]
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pin = Requirement(line)
            specs = list(pin.specifier)
            assert len(specs) == 1 and specs[0].operator == "==", f"constraints.txt: {line!r} is not name==version"
            pins[canonicalize_name(pin.name)] = Version(specs[0].version)
    problems = []
    for req in declared:
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req.name} is declared in pyproject.toml but not pinned in constraints.txt")
        elif not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req.name}=={pinned} in constraints.txt is outside pyproject.toml's {req.specifier}")
    assert not problems, "\n".join(problems)


def test_every_dependency_has_an_upper_bound() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = [*project["dependencies"], *(t for extra in project["optional-dependencies"].values() for t in extra)]
    unbounded = [t for t in texts if not any(s.operator in ("<", "<=", "==", "~=") for s in Requirement(t).specifier)]
    assert not unbounded, f"bound the major version of: {unbounded}"
