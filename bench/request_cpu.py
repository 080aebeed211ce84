"""CPU per request of the ASGI app called in-process, as a served process is set up (production settings, JSON
access lines written to a discarded stream), on a fresh PostgreSQL database or the embedded SQLite default.

    python -m bench.request_cpu [--requests 3000] [--sqlite] [--temporal 127.0.0.1:7233]

No server, socket or load generator: what one request costs the process itself, the figure the served
benchmark (bench/compare.py) rests on. Requests go straight through the ASGI interface, as uvicorn calls the
app. Prints milliseconds of process CPU per request for each path. With `--temporal` (a running dev server with
the search attributes `statex run` registers), also `POST /api/contact`, whose workflow start goes there: the
API's part of the starts benchmark, the Temporal client's own threads included (process CPU counts them).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg

from api.app import create_app
from bench.compare import FILES, PG_ADMIN_URL
from models.db import create_engine, migrate
from observability.logs import configure_logging
from settings import Settings

PATHS = ("/health", "/auth/me", "/api/files", "/api/payments/catalogue")
CONTACT = "POST /api/contact"


async def measure(settings: Settings, requests: int, *, contact: bool) -> dict[str, float]:
    engine = create_engine(settings.effective_database_url)
    await migrate(engine)
    await engine.dispose()
    # Without a Temporal server no route measured here starts a workflow: a placeholder stands for the client.
    app = create_app(settings, temporal=None if contact else object(), served=True)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
            email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
            await http.post("/auth/register", json={"email": email, "password": "benchmark password"})
            tokens = (await http.post("/auth/login", json={"email": email, "password": "benchmark password"})).json()
            user_id = (await http.get("/auth/me", headers=_bearer(tokens))).json()["id"]
        await seed(settings, user_id)
        headers = [(b"host", b"bench"), (b"authorization", _bearer(tokens)["Authorization"].encode())]
        figures: dict[str, float] = {}
        for path in PATHS:
            figures[path] = await _per_request(requests, partial(call, app, "GET", path, headers), path)
        if contact:
            headers = [(b"host", b"bench"), (b"content-type", b"application/json")]
            figures[CONTACT] = await _per_request(
                requests, lambda: call(app, "POST", "/api/contact", headers, _contact_body()), CONTACT
            )
    return figures


async def _per_request(requests: int, request: Callable[[], Awaitable[int]], name: str) -> float:
    for _ in range(requests // 10):  # warm: first compilations, caches
        await request()
    started = time.process_time()
    for _ in range(requests):
        status = await request()
    assert status in (200, 202), f"{name} answered {status}"
    return (time.process_time() - started) * 1000 / requests


def _contact_body() -> bytes:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    return json.dumps({"name": "Bench", "email": email, "message": "A benchmark message."}).encode()


def _bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def call(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> int:
    """One request straight through the ASGI interface, as uvicorn calls the app: no HTTP client in the figure
    (an httpx transport adds CPU of its own to every request)."""
    statuses: list[int] = []
    if body:
        headers = [*headers, (b"content-length", str(len(body)).encode())]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await app(scope, receive, send)
    return statuses[0]


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
    parser.add_argument("--temporal", help="a running Temporal dev server's address: also measure POST /api/contact")
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
        **({"temporal_address": args.temporal} if args.temporal else {}),
    )
    stderr = sys.stderr
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115  # the access lines are formatted and written, then dropped
    try:
        configure_logging(settings, queued=True)  # as api.app.serve sets a served process up
        figures = asyncio.run(measure(settings, args.requests, contact=bool(args.temporal)))
    finally:
        sys.stderr.close()
        sys.stderr = stderr
        if not args.sqlite:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(folder, ignore_errors=True)  # its data directory (the SQLite file, spooled uploads)
    for path, ms in figures.items():
        print(f"{path:24} {ms:.3f} ms CPU per request")


if __name__ == "__main__":
    main()
