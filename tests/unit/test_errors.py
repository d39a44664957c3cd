"""The error tree drawn in ``errors.py``'s docstring is the class tree, every class in it."""

from __future__ import annotations

import inspect
import re

from coditect_tasks import errors


def drawn_tree(doc: str) -> dict[str, str | None]:
    """Class → parent as the docstring draws it (``├──``/``└──`` branches, four columns a level)."""
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in doc.splitlines():
        match = re.match(r"^ *((?:[│ ]   )*)(?:├── |└── )?(\w+Error)\b", line)
        if not match:
            continue
        depth = len(match.group(1)) // 4 + (1 if re.search(r"[├└]── ", line) else 0)
        del stack[depth:]
        parents[match.group(2)] = stack[-1] if stack else None
        stack.append(match.group(2))
    return parents


def early_last_branches(doc: str) -> list[str]:
    """Classes drawn with ``└──`` (the last child) that a sibling follows."""
    lines = [line for line in doc.splitlines() if re.search(r"[├└]── \w+Error", line)]
    found = []
    for i, line in enumerate(lines):
        column = line.index("── ")
        if "└── " in line:
            for later in lines[i + 1 :]:
                later_column = later.index("── ")
                if later_column < column:
                    break
                if later_column == column:
                    found.append(line.strip())
                    break
    return found


def test_the_docstring_draws_every_error_class_under_its_parent() -> None:
    classes = {
        name: cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and issubclass(cls, errors.CoditectError) and cls.__module__ == errors.__name__
    }
    drawn = drawn_tree(errors.__doc__ or "")
    assert set(drawn) == set(classes)
    for name, parent in drawn.items():
        assert classes[name].__bases__[0].__name__ == (parent or "Exception"), name
    assert early_last_branches(errors.__doc__ or "") == []


def test_a_misplaced_branch_is_caught() -> None:
    doc = "    CoditectError\n    ├── DagError\n    │   └── CycleError\n    └── RunStateError\n"
    assert drawn_tree(doc) == {
        "CoditectError": None,
        "DagError": "CoditectError",
        "CycleError": "DagError",
        "RunStateError": "CoditectError",
    }
    assert drawn_tree(doc.replace("│   └── CycleError", "└── CycleError"))["CycleError"] == "CoditectError"
    assert early_last_branches(doc.replace("├── DagError", "└── DagError")) == ["└── DagError"]
