"""Logs without credentials: a download link's token, a bearer token or a cookie never reaches a log line or
a Sentry breadcrumb. uvicorn's access log printed `GET /api/files/...?token=eyJ...` (valid 24 hours)."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import uvicorn
from conftest import AppFactory
from helpers import bearer, eventually, register_and_login
from uvicorn.logging import AccessFormatter

from activities.storage import sign_download
from models.types import utcnow
from observability.redaction import RedactCredentials, install_log_redaction
from observability.sentry import scrub_breadcrumb, scrub_event
from settings import Settings

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class Captured(logging.Handler):
    """Lines as uvicorn's own access handler would write them."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def access_log() -> Iterator[Captured]:
    logger = logging.getLogger("uvicorn.access")
    handler, level = Captured(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_an_access_record_shaped_like_uvicorns_loses_its_token(access_log: Captured) -> None:
    install_log_redaction()
    path = f"/api/files/{uuid.uuid4()}?token={TOKEN}&download=1"
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "GET", path, "1.1", 200),
        None,
    )
    logging.getLogger("uvicorn.access").handle(record)
    (line,) = access_log.lines
    assert TOKEN not in line
    assert "token=[Filtered]&download=1" in line and '"GET /api/files/' in line and line.endswith("200 OK")


@pytest.mark.parametrize(
    "text",
    [
        f"GET /x?access_token={TOKEN} HTTP/1.1",
        f"POST /x?refresh_token={TOKEN}",
        f"headers: Authorization: Bearer {TOKEN}",
        f"sent Bearer {TOKEN}",
        f"Cookie: session={TOKEN}",
    ],
)
def test_any_log_line_loses_credentials(text: str) -> None:
    record = logging.LogRecord("anything", logging.WARNING, __file__, 1, "seen %s", (text,), None)
    assert RedactCredentials().filter(record)
    assert TOKEN not in record.getMessage()
    formatted_in_msg = logging.LogRecord("anything", logging.WARNING, __file__, 1, text, (), None)
    RedactCredentials().filter(formatted_in_msg)
    assert TOKEN not in formatted_in_msg.getMessage()


def test_sentry_breadcrumbs_and_events_lose_credentials() -> None:
    crumb = {
        "category": "uvicorn.access",
        "message": f'1.2.3.4:5 - "GET /api/files/x?token={TOKEN} HTTP/1.1" 200',
        "data": {"url": f"https://api.example/api/files/x?token={TOKEN}"},
    }
    event = {
        "request": {"url": "https://api.example/api/files/x", "query_string": f"token={TOKEN}", "cookies": "s=1"},
        "breadcrumbs": {"values": [crumb]},
        "extra": {"line": f"Authorization: Bearer {TOKEN}"},
    }
    assert TOKEN not in str(scrub_breadcrumb(crumb))
    assert TOKEN not in str(scrub_event(event))


def _free_socket() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    return listener


async def test_a_real_uvicorn_access_log_of_a_download_by_token_holds_no_token(
    make_app: AppFactory, settings: Settings, access_log: Captured
) -> None:
    app = make_app()  # create_app installs the filter
    listener = _free_socket()
    host, port = listener.getsockname()
    config = uvicorn.Config(app, log_config=None, log_level="info", access_log=True, lifespan="on", server_header=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:

        async def started() -> bool:
            return server.started

        await eventually(started, within=20, what="uvicorn to start")
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as api:
            account = await register_and_login(api)
            uploaded = await api.post(
                "/api/files/upload",
                files={"file": ("a.png", PNG, "image/png")},
                headers=bearer(account["access_token"]),
            )
            file_id = uploaded.json()["fileId"]
            link = sign_download(settings, uuid.UUID(file_id), utcnow() + timedelta(hours=1))
            download = await api.get(f"/api/files/{file_id}", params={"token": link})
            assert download.status_code == 200 and download.content == PNG

        async def logged() -> list[str]:
            return [line for line in access_log.lines if f"/api/files/{file_id}?" in line]

        (line,) = await eventually(logged, what="the download's access log line")
    finally:
        server.should_exit = True
        await task
        listener.close()
    assert link not in line and "token=[Filtered]" in line and line.endswith("200 OK")
    assert not any(link in each or account["access_token"] in each for each in access_log.lines)
