"""The API imports only what the API uses: the SDKs that only the worker's activities need stay out of it.

Each SDK costs the API memory in every process for nothing (docs/benchmarks.md has the memory at rest): the API
names activities and gateways, it never calls them. A fresh interpreter, so that what other tests imported does
not count.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WORKER_ONLY = [
    "openai",  # the OpenAI and Azure activities
    "ollama",  # the Ollama activity
    "stripe",  # the Stripe gateway; a Stripe webhook imports it when one arrives
    "botocore",  # R2 storage and SES email: local storage and the outbox need neither
    "boto3",
    "alembic",  # migrations: `statex api` migrates once before it starts its processes
    "opentelemetry.sdk",  # traces: only with OTEL_EXPORTER_OTLP_ENDPOINT set
    "opentelemetry.exporter",
    "httpx",  # the gateways' and Ollama's HTTP clients (and, through httpx's CLI, rich, click and pygments)
    "rich",
    "genai_prices",  # pricing a model call: the worker's AI activities
    "devstack",  # `statex run`, its Stripe emulator and smoke: never a request
    "temporalio.worker",  # the worker's interceptors (observability/interceptors.py); the API's client needs none of it
    "observability.interceptors",
]


PROBE = """
import json, sys
import api.app, settings
from pydantic import SecretStr
snapshots = {"imported": sorted(sys.modules)}
api.app.create_app()
snapshots["created"] = sorted(sys.modules)
api.app.create_app(settings.get_settings().model_copy(update={"sentry_dsn": SecretStr("https://public@127.0.0.1:9/1")}))
snapshots["with_sentry"] = sorted(sys.modules)
print(json.dumps(snapshots))
"""


@functools.cache
def modules() -> dict[str, set[str]]:
    """The modules a fresh interpreter holds after importing the API, creating the app, and creating it again
    with Sentry turned on: one interpreter for the three (each costs seconds of CPU)."""
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    return {name: set(found) for name, found in json.loads(out.stdout).items()}


def test_importing_the_api_loads_no_worker_only_sdk() -> None:
    loaded = modules()["imported"]
    assert "fastapi" in loaded  # the probe did import the API
    assert [name for name in WORKER_ONLY if name in loaded] == []


def test_sentry_is_imported_only_by_a_process_that_turns_it_on() -> None:
    assert "sentry_sdk" not in modules()["created"]
    assert "sentry_sdk" in modules()["with_sentry"]
