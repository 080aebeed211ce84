# The README's two commands, `make run` and `make test`, on a fresh clone with only Python 3.11+ and make.
# The virtualenv is created on first use and reinstalled whenever pyproject.toml changes: `make run` installs
# what running needs (the `run` extra), `make test` and `make lint` add the test tools (the `dev` extra).
# Another interpreter: PYTHON=python3.12 make run. Extra pytest arguments: make test PYTEST_ARGS='-k contact'.

PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
RUN_INSTALLED := $(VENV)/.installed-run
DEV_INSTALLED := $(VENV)/.installed-dev

.PHONY: run test lint format worker api migrate pay

run: $(RUN_INSTALLED)
	$(VENV_PYTHON) -m cli run

test: $(DEV_INSTALLED)
	$(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

lint: $(DEV_INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(DEV_INSTALLED)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

worker: $(RUN_INSTALLED)
	$(VENV_PYTHON) -m cli worker

api: $(RUN_INSTALLED)
	$(VENV_PYTHON) -m cli api

migrate: $(RUN_INSTALLED)
	$(VENV_PYTHON) -m cli migrate

pay: $(RUN_INSTALLED)  # make pay ID=<payment id> [CARD=declined]: a test card at the local Stripe emulator
	$(VENV_PYTHON) -m cli pay $(ID) --card $(or $(CARD),success)

.PHONY: histories
histories: $(DEV_INSTALLED)  # re-record tests/histories/*.json (README, "Replay tests and changing workflows")
	$(VENV_PYTHON) tests/histories/record.py

$(RUN_INSTALLED): pyproject.toml | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install -e '.[run]'
	touch $@

$(DEV_INSTALLED): pyproject.toml | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install -e '.[run,dev]'
	touch $@ $(RUN_INSTALLED)

# Order-only above: the interpreter is a symlink whose date is the system Python's, not a reason to reinstall.
$(VENV_PYTHON):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
		echo "Statex needs Python 3.11 or newer; '$(PYTHON)' is: $$($(PYTHON) --version 2>&1)." >&2; \
		echo "Name another interpreter, for example: PYTHON=python3.12 make $(or $(MAKECMDGOALS),run)" >&2; \
		exit 1; }
	$(PYTHON) -m venv $(VENV)
