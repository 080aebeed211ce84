# Two images from one file: `--target api` (the default: the last stage), which also runs the migrations
# (`python -m cli migrate`), and `--target worker` (`python -m worker`), the worker's with the headless browser that
# takes the pictures of generated apps; the API never runs a browser and does not carry one. Both hold the same
# application, built once (the `app` stage). See docker-compose.yml for the stack around them, deploy/ for
# Kubernetes.
FROM python:3.11-slim AS os

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data \
    SECRETS_DIR=/run/secrets \
    API_HOST=0.0.0.0 \
    API_PORT=8000 \
    ENVIRONMENT=production \
    PATH=/app/.venv/bin:$PATH

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


# The application: uv, pinned (the Makefile's UV_VERSION), installs exactly what uv.lock says, so the images run
# the versions CI tested. The runtime dependencies only: no `run` extra (the dev server and the Stripe emulator)
# and no test tools.
FROM os AS app

ENV UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
RUN pip install 'uv==0.13.9'

# The dependencies first, in a layer of their own: rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project

COPY . .
RUN uv sync --locked --no-dev --no-editable


# The worker: Debian's chromium (no browser download at run time), and fonts, so that a generated app's page is
# pictured with real letters. PREVIEW_BROWSER (default /usr/bin/chromium) names it; PREVIEWS_ENABLED=false turns
# the pictures off. Installed before the application, so a change of code does not install the browser again.
# Its container's health check is declared where it runs (docker-compose.yml, deploy/): /metrics once it polls.
FROM os AS worker

RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium fonts-dejavu-core fonts-liberation \
    && rm -rf /var/lib/apt/lists/*

COPY --from=app /app /app
USER statex
CMD ["python", "-m", "worker"]


# The API (the default target), which also runs the migrations: no browser.
FROM os AS api

COPY --from=app /app /app
USER statex
EXPOSE 8000
# The default command's (the API's) liveness: the process serves. The worker's and the migrations' containers
# declare their own (docker-compose.yml): the worker's /metrics answers once it polls; a one-shot has none.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['API_PORT']}/health\", timeout=3)"]
# A container started without ENVIRONMENT runs as production: the default JWT secret is refused, /docs is off.
# `statex api` execs uvicorn (uvloop + httptools) with one process per core unless API_WORKERS says otherwise.
CMD ["python", "-m", "cli", "api"]
