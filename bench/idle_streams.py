"""Idle CPU of open event streams: STREAMS streams on one prototype held AWAITING_APPROVAL, nothing happening.

    python -m bench.idle_streams [--streams 100] [--seconds 20]

A local Temporal dev server (the `temporal` binary of the dev group), the embedded SQLite default, the worker
and the API in this process, the streams through the ASGI interface. Prints this process's CPU (API and
worker: the worker answers the watcher's queries) as a share of one core, over a window
in which every stream is open and waiting. The goal: under 5 % of a core for 100 streams.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from models import search_attributes
from models.db import create_engine, migrate
from settings import Settings
from worker import build_worker
from workflows.codec import data_converter

IDEA = {"idea": "An app that books climbing gyms: members see free slots and reserve one.", "review_requirements": True}


async def until(probe: Callable[[], Awaitable[bool]]) -> None:
    while True:
        if await probe():
            return
        await asyncio.sleep(0.2)


async def main(streams: int, seconds: float) -> None:
    folder = Path(tempfile.mkdtemp(prefix="idle-streams-"))
    keys = f"bench:{base64.b64encode(os.urandom(32)).decode()}"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        data_dir=folder,
        database_url=f"sqlite+aiosqlite:///{folder / 'bench.db'}",
        bcrypt_rounds=4,
        rate_limit_enabled=False,
        redis_url=None,
        sentry_dsn=None,
        payload_keys=keys,
        prototype_events_per_user=streams,
        prototype_events_max_seconds=3600,
        api_max_concurrency=1000,  # all streams are opened at once here; opening (not holding) one is in flight
    )
    engine = create_engine(settings.effective_database_url, pool_size=settings.database_pool_size)
    await migrate(engine)
    binary = shutil.which("temporal", path=str(Path(sys.executable).parent)) or "temporal"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary,
        search_attributes=search_attributes.ALL,
        data_converter=data_converter(settings),
        ui=False,
        dev_server_log_level="error",
    )
    app = create_app(settings, temporal=env.client)
    try:
        async with app.router.lifespan_context(app), build_worker(env.client, settings, engine):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=60) as api:
                email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
                await api.post("/auth/register", json={"email": email, "password": "correct horse battery"})
                login = await api.post("/auth/login", json={"email": email, "password": "correct horse battery"})
                headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
                accepted = await api.post("/api/ai/prototype", json=IDEA, headers=headers)
                prototype_id = accepted.json()["prototype_id"]

                async def waiting() -> bool:
                    view = await api.get(f"/api/prototypes/{prototype_id}", headers=headers)
                    return bool(view.json()["status"] == "AWAITING_APPROVAL")

                await until(waiting)

                async def follow() -> None:
                    async with api.stream("GET", f"/api/prototypes/{prototype_id}/events", headers=headers) as sse:
                        async for _ in sse.aiter_raw():
                            pass

                tasks = [asyncio.create_task(follow()) for _ in range(streams)]
                watchers = app.state.event_watchers

                async def all_open() -> bool:
                    return bool(watchers.open == streams)

                await until(all_open)
                await asyncio.sleep(2)  # every stream has had the events so far: what follows is idle
                cpu, wall = time.process_time(), time.monotonic()
                await asyncio.sleep(seconds)
                cpu, wall = time.process_time() - cpu, time.monotonic() - wall
                print(f"{streams} open streams on one prototype, idle for {wall:.1f} s:")
                print(f"  API + worker process: {100 * cpu / wall:.2f} % of a core")
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await env.shutdown()
        await engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.streams, arguments.seconds))
