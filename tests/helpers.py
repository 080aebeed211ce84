"""Plain helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, update

from models.db import open_session
from models.tables import User
from models.types import utcnow
from settings import Settings

T = TypeVar("T")


@asynccontextmanager
async def serve(app: FastAPI, client_ip: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and talk to it over ASGI, as `client_ip`; a 500 is a response, as on a server."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(client_ip, 40000), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def eventually(probe: Callable[[], Awaitable[T | None]], *, within: float = 20.0, what: str = "") -> T:
    """Poll until `probe` returns something truthy, or fail after `within` seconds (never a fixed sleep)."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what or probe}")
        await asyncio.sleep(0.05)


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


async def register_and_login(api: httpx.AsyncClient, password: str = "correct horse battery") -> dict[str, Any]:
    email = new_email()
    created = await api.post("/auth/register", json={"email": email, "password": password, "name": "Ada"})
    assert created.status_code == 202, created.text
    tokens = await api.post("/auth/login", json={"email": email, "password": password})
    assert tokens.status_code == 200, tokens.text
    user = (await api.get("/auth/me", headers=bearer(tokens.json()["access_token"]))).json()
    return {"email": email, "password": password, "user": user, **tokens.json()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def mark_verified(engine: AsyncEngine, user_id: uuid.UUID) -> None:
    """As the verification link does (tests/accounts/test_account_email.py follows the link itself)."""
    async with open_session(engine) as db:
        await db.exec(update(User).where(col(User.id) == user_id).values(email_verified_at=utcnow()))  # type: ignore[call-overload]
        await db.commit()


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


def multipart(content: bytes, name: str, content_type: str) -> tuple[bytes, bytes, str]:
    """The parts before and after the file's bytes, and the Content-Type header that goes with them."""
    boundary = uuid.uuid4().hex
    head = b"".join(
        (
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="file"; filename="' + name.encode() + b'"\r\n',
            f"Content-Type: {content_type}\r\n\r\n".encode(),
        )
    )
    return head, f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def upload(
    api: httpx.AsyncClient, token: str, content: bytes, name: str = "mockup.png", content_type: str = "image/png"
) -> httpx.Response:
    """A multipart body built by hand, so the file name arrives byte for byte (httpx would escape a NUL)."""
    head, tail, form_type = multipart(content, name, content_type)
    headers = {**bearer(token), "Content-Type": form_type}
    return await api.post("/api/files/upload", content=head + content + tail, headers=headers)


def stored_objects(settings: Settings) -> list[Path]:
    return [path for path in settings.files_dir.rglob("*") if path.is_file()] if settings.files_dir.exists() else []


def png(width: int = 8, height: int = 6) -> bytes:
    """A real PNG (RGB, 8 bits): a red top half over a blue bottom half, so that it is not blank."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + (b"\xff\x00\x00" if y < height // 2 else b"\x00\x00\xff") * width for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
