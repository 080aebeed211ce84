"""An in-process stack for benchmarks: a Temporal dev server (SQLite file, WAL), the worker and the API app,
on the embedded defaults in a temporary folder. Benchmarks print figures; they assert nothing."""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from models import search_attributes
from models.db import create_engine, migrate
from settings import Settings
from worker import build_worker
from workflows.codec import data_converter


@dataclass
class Stack:
    settings: Settings
    http: httpx.AsyncClient
    env: WorkflowEnvironment


@asynccontextmanager
async def running_stack(**overrides: object) -> AsyncIterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="statex-bench-") as folder:
        data_dir = Path(folder)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=data_dir,
            rate_limit_enabled=False,
            bcrypt_rounds=4,
            temporal_task_queue=f"bench-{uuid.uuid4().hex[:8]}",
            **overrides,  # type: ignore[arg-type]
        )
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            search_attributes=search_attributes.ALL,
            data_converter=data_converter(settings),
            ui=False,
            dev_server_extra_args=[
                "--db-filename",
                str(data_dir / "temporal.sqlite3"),
                "--sqlite-pragma",
                "journal_mode=wal",
                "--sqlite-pragma",
                "synchronous=normal",
            ],
        )
        engine = create_engine(settings.effective_database_url)
        await migrate(engine)
        app = create_app(settings, temporal=env.client)
        try:
            async with build_worker(env.client, settings, engine), app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as http:
                    yield Stack(settings=settings, http=http, env=env)
        finally:
            await engine.dispose()
            await env.shutdown()


async def signed_in(http: httpx.AsyncClient) -> dict[str, str]:
    """Register and log in a fresh user; returns the Authorization header."""
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    await http.post("/auth/register", json={"email": email, "password": "benchmark password"})
    tokens = (await http.post("/auth/login", json={"email": email, "password": "benchmark password"})).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}
