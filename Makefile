# One gate: `make check` runs lint, types and the README's test command, as CI does.
# `make test-unit` is the edit-test loop: the unit tests only, in well under a minute.
PY := .venv/bin/python

.PHONY: check lint test test-unit bench lock docs

check: lint test

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test:
	$(PY) -m pytest --cov --cov-fail-under=80

test-unit:
	$(PY) -m pytest tests/unit

bench:
	.venv/bin/coditect-tasks bench

# Re-resolve the newest versions pyproject.toml allows into constraints.txt; then `make check` and commit both.
lock:
	rm -rf .lock-venv && python3 -m venv .lock-venv && .lock-venv/bin/pip install -q -e '.[dev]'
	{ echo "# The exact versions the test suite passed with (Python 3.11, Linux). The README's two"; \
	  echo "# commands and .ci/run install with -c constraints.txt, so a fresh install gets these."; \
	  echo "# Refresh: make lock (a fresh venv, pip install -e '.[dev]' unconstrained, pip freeze), then make check."; \
	  .lock-venv/bin/pip freeze --exclude-editable; } > constraints.txt
	rm -rf .lock-venv

# The documentation site: built with -W -n (any warning fails), served on 127.0.0.1:8000.
docs:
	.venv/bin/coditect-tasks docs
