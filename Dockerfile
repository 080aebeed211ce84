# One image, three commands: the API (the default), the worker (`python -m worker`) and the migrations
# (`python -m cli migrate`). See docker-compose.yml for the stack around them, deploy/ for Kubernetes.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data \
    SECRETS_DIR=/run/secrets \
    API_HOST=0.0.0.0 \
    API_PORT=8000 \
    ENVIRONMENT=production

# bubblewrap: the jail the worker verifies generated code in (activities/sandbox.py). It makes user namespaces,
# which a container's default seccomp / AppArmor profile may forbid: then the worker says so at startup and
# prototypes complete "not verified: sandbox unavailable" (GET /api/capabilities tells which).
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*

# Secrets are files in SECRETS_DIR, one per setting (jwt_secret, payload_keys, ...), as compose and Kubernetes
# mount them; a variable in the environment still wins over its file.
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home statex \
    && mkdir --mode=0700 /data && chown statex:statex /data \
    && mkdir --parents /run/secrets

WORKDIR /app

# uv, pinned (the Makefile's UV_VERSION), installs exactly what uv.lock says: the image runs the versions CI tested.
# The runtime dependencies only: no `run` extra (the dev server and the Stripe emulator) and no test tools.
ENV UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PATH=/app/.venv/bin:$PATH
RUN pip install 'uv==0.13.9'

# The dependencies first, in a layer of their own: rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project

COPY . .
RUN uv sync --locked --no-dev --no-editable

USER statex
EXPOSE 8000
# The default command's (the API's) liveness: the process serves. The worker's and the migrations' containers
# declare their own (docker-compose.yml): the worker's /metrics answers once it polls; a one-shot has none.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['API_PORT']}/health\", timeout=3)"]
# A container started without ENVIRONMENT runs as production: the default JWT secret is refused, /docs is off.
# `statex api` execs uvicorn (uvloop + httptools) with one process per core unless API_WORKERS says otherwise.
CMD ["python", "-m", "cli", "api"]
