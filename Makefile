# The README's two commands, `make run` and `make test`, on a fresh clone with only Python 3.11+ and make.
# Every install comes from uv.lock (the versions CI tested), through uv: a pinned uv is installed once into .tools/
# (from PyPI, with the interpreter's pip), then `uv sync` makes .venv match the lock. `make run` installs what
# running needs (the runtime dependencies and the `run` extra); `make test` and `make lint` add the `dev` group.
# Update the lock after changing pyproject.toml: make lock (or `make lock-upgrade` for newer versions).
# Another interpreter: PYTHON=python3.12 make run. Extra pytest arguments: make test PYTEST_ARGS='-k contact'.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
# uv never downloads an interpreter (the one named by PYTHON is used) and installs into .venv.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# --inexact: a runtime sync leaves test tools a developer installed in place; a fresh clone gets the runtime only.
SYNC_RUN = $(UV) sync --locked --python $(PYTHON) --inexact --no-dev --extra run
SYNC_DEV = $(UV) sync --locked --python $(PYTHON) --extra run

.PHONY: run test lint format worker api migrate pay

run: $(UV)
	$(SYNC_RUN)
	$(VENV_PYTHON) -m cli run

test: $(UV)
	$(SYNC_DEV)
	$(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

lint: $(UV)
	$(SYNC_DEV)
	$(VENV)/bin/deptry .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(UV)
	$(SYNC_DEV)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

worker: $(UV)
	$(SYNC_RUN)
	$(VENV_PYTHON) -m cli worker

api: $(UV)
	$(SYNC_RUN)
	$(VENV_PYTHON) -m cli api

migrate: $(UV)
	$(SYNC_RUN)
	$(VENV_PYTHON) -m cli migrate

pay: $(UV)  # make pay ID=<payment id> [CARD=declined]: a test card at the local Stripe emulator
	$(SYNC_RUN)
	$(VENV_PYTHON) -m cli pay $(ID) --card $(or $(CARD),success)

.PHONY: histories
histories: $(UV)  # re-record tests/replay/*.json (docs/architecture.md, "Replay tests and changing workflows")
	$(SYNC_DEV)
	$(VENV_PYTHON) tests/replay/record.py

.PHONY: frontend-client
frontend-client: $(UV)  # the typed TypeScript client, generated from the API's OpenAPI, type-checked, its page built
	$(SYNC_RUN)
	$(VENV_PYTHON) -m cli openapi --output frontend-client/openapi.json
	cd frontend-client && npm ci && npm run generate && npm run check && npm run build

# deploy/kubernetes checked without a cluster (deploy/checks/check.sh says how): the overlays rendered by
# kubectl's kustomize, every manifest validated against the Kubernetes JSON schemas, then checkov's security scan.
# The tools live in .venv-deploy, from deploy/checks' own lock (checkov would downgrade the service's boto3 in a
# shared one); `make test` installs none of them.
DEPLOY_VENV := $(CURDIR)/.venv-deploy

.PHONY: check-deploy
check-deploy: $(UV)
	UV_PROJECT_ENVIRONMENT=$(DEPLOY_VENV) $(UV) sync --locked --project deploy/checks --python $(PYTHON)
	deploy/checks/check.sh $(DEPLOY_VENV)

.PHONY: lock lock-upgrade
lock: $(UV)  # uv.lock again after a change to pyproject.toml (the versions already locked are kept)
	$(UV) lock
lock-upgrade: $(UV)  # uv.lock with the newest versions pyproject.toml allows; run make test after
	$(UV) lock --upgrade

# uv itself, pinned, in a folder of its own so that `uv sync` can make .venv exactly what the lock says.
$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
		echo "Statex needs Python 3.11 or newer; '$(PYTHON)' is: $$($(PYTHON) --version 2>&1)." >&2; \
		echo "Name another interpreter, for example: PYTHON=python3.12 make $(or $(MAKECMDGOALS),run)" >&2; \
		exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet 'uv==$(UV_VERSION)'
