"""CPU per request of the ASGI app called in-process, as a served process is set up (production settings, JSON
access lines written to a discarded stream), on a fresh PostgreSQL database or the embedded SQLite default.

    python -m bench.request_cpu [--requests 3000] [--sqlite]

No server, socket or load generator: what one request costs the process itself, the figure the served
benchmark (bench/compare.py) rests on. Prints milliseconds of process CPU per request for each path.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from api.app import create_app
from bench.compare import FILES, PG_ADMIN_URL
from logs import configure_logging
from models.db import create_engine, migrate
from settings import Settings

PATHS = ("/health", "/auth/me", "/api/files")


async def measure(settings: Settings, requests: int) -> dict[str, float]:
    engine = create_engine(settings.effective_database_url)
    await migrate(engine)
    await engine.dispose()
    app = create_app(settings, temporal=object(), served=True)  # type: ignore[arg-type]  # no route here starts one
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
            await http.post("/auth/register", json={"email": email, "password": "benchmark password"})
            tokens = (await http.post("/auth/login", json={"email": email, "password": "benchmark password"})).json()
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            user_id = (await http.get("/auth/me", headers=headers)).json()["id"]
            await seed(settings, user_id)
            figures: dict[str, float] = {}
            for path in PATHS:
                for _ in range(requests // 10):  # warm: first compilations, caches
                    await http.get(path, headers=headers)
                started = time.process_time()
                for _ in range(requests):
                    response = await http.get(path, headers=headers)
                assert response.status_code == 200, response.text
                figures[path] = (time.process_time() - started) * 1000 / requests
            # The client's own share: the same transport against an app that answers at once.
            figures["(client)"] = await client_share(requests)
    return figures


async def client_share(requests: int) -> float:
    async def empty(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=empty), base_url="http://bench") as http:
        started = time.process_time()
        for _ in range(requests):
            await http.get("/health", headers={"Authorization": "Bearer x"})
        return (time.process_time() - started) * 1000 / requests


async def seed(settings: Settings, user_id: str) -> None:
    engine = create_engine(settings.effective_database_url)
    async with engine.begin() as connection:
        for index in range(FILES):
            file_id = uuid.uuid4()
            await connection.exec_driver_sql(
                "INSERT INTO files (id, user_id, storage_key, original_name, content_type, size_bytes, sha256,"
                " created_at, expires_at, deleted_at) VALUES (?, ?, ?, ?, 'text/plain', 1024, ?, ?, ?, NULL)"
                if connection.dialect.name == "sqlite"
                else "INSERT INTO files (id, user_id, storage_key, original_name, content_type, size_bytes, sha256,"
                " created_at, expires_at, deleted_at) VALUES (%s, %s, %s, %s, 'text/plain', 1024, %s, %s, %s, NULL)",
                _file_values(connection.dialect.name, file_id, user_id, index),
            )
    await engine.dispose()


def _file_values(dialect: str, file_id: uuid.UUID, user_id: str, index: int) -> tuple[object, ...]:
    from datetime import timedelta

    from models.tables import utcnow

    now = utcnow()
    values: tuple[object, ...] = (file_id, uuid.UUID(user_id), f"uploads/{file_id}", f"notes-{index}.txt", "0" * 64)
    if dialect == "sqlite":  # stored as SQLAlchemy stores them there: hex ids, ISO moments
        values = (file_id.hex, uuid.UUID(user_id).hex, *values[2:])
        return (*values, now.isoformat(sep=" "), (now + timedelta(days=1)).isoformat(sep=" "))
    return (*values, now, now + timedelta(days=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--sqlite", action="store_true", help="the embedded default instead of PostgreSQL")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="statex-cpu-"))
    name = f"statex_cpu_{uuid.uuid4().hex[:10]}"
    url = None
    if not args.sqlite:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="production",
        jwt_secret=secrets.token_urlsafe(48),
        payload_keys=f"bench:{base64.b64encode(secrets.token_bytes(32)).decode()}",
        database_url=url,
        data_dir=folder,
        rate_limit_enabled=False,
        redis_url=None,
        sentry_dsn=None,
        bcrypt_rounds=4,
    )
    stderr = sys.stderr
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115  # the access lines are formatted and written, then dropped
    try:
        configure_logging(settings)
        figures = asyncio.run(measure(settings, args.requests))
    finally:
        sys.stderr.close()
        sys.stderr = stderr
        if not args.sqlite:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for path, ms in figures.items():
        print(f"{path:12} {ms:.3f} ms CPU per request")


if __name__ == "__main__":
    main()
