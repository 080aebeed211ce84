# The README's two commands, `make run` and `make test`, on a fresh clone with only Python 3.11+ and make.
# The virtualenv is created on first use and reinstalled whenever pyproject.toml changes.
# Another interpreter: PYTHON=python3.12 make run. Extra pytest arguments: make test PYTEST_ARGS='-k contact'.

PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: run test lint format worker api migrate

run: $(INSTALLED)
	$(VENV_PYTHON) -m cli run

test: $(INSTALLED)
	$(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(INSTALLED)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

worker: $(INSTALLED)
	$(VENV_PYTHON) -m cli worker

api: $(INSTALLED)
	$(VENV_PYTHON) -m cli api

migrate: $(INSTALLED)
	$(VENV_PYTHON) -m cli migrate

.PHONY: histories
histories: $(INSTALLED)  # re-record tests/histories/*.json (README, "Replay tests and changing workflows")
	$(VENV_PYTHON) tests/histories/record.py

$(INSTALLED): pyproject.toml | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install -e '.[dev]'
	touch $@

# Order-only above: the interpreter is a symlink whose date is the system Python's, not a reason to reinstall.
$(VENV_PYTHON):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
		echo "Statex needs Python 3.11 or newer; '$(PYTHON)' is: $$($(PYTHON) --version 2>&1)." >&2; \
		echo "Name another interpreter, for example: PYTHON=python3.12 make $(or $(MAKECMDGOALS),run)" >&2; \
		exit 1; }
	$(PYTHON) -m venv $(VENV)
