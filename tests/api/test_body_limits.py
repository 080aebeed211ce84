"""Bounded input: every body has a limit that holds before it is read, multipart forms are bounded as
a whole, an upload that stops sending is cut off, and one user has at most two uploads in flight.

Each test is one of the attacks that were observed, sent to the real app (PostgreSQL, Temporal) over ASGI.
Bodies are generated lazily, so a test knows how much of a body the server asked for.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from conftest import AppFactory
from helpers import bearer, eventually, register_and_login, serve
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from temporalio.client import Client

from models.db import open_session
from models.tables import File
from settings import Settings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
MB = 1024 * 1024
CHUNK = 64 * 1024
# A transcriber is configured (never called) so that POST /api/ai/voice reaches its upload; without one it
# answers 503 before anything else.
WITH_TRANSCRIBER = {"openai_api_key": SecretStr("sk-unused"), "openai_base_url": "http://127.0.0.1:9/v1"}


class LazyBody:
    """`total` bytes, generated chunk by chunk only as the server asks for them; counts what it handed out."""

    def __init__(self, prefix: bytes, filler: bytes, total: int) -> None:
        self.prefix, self.filler, self.total = prefix, filler, total
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = self.prefix
        while self.sent < self.total:
            chunk = chunk or self.filler * (CHUNK // len(self.filler))
            chunk = chunk[: self.total - self.sent]
            self.sent += len(chunk)
            yield chunk
            chunk = b""


def form_head(boundary: str, name: str = "a.png", content_type: str = "image/png") -> bytes:
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()


def form_tail(boundary: str) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode()


def form_type(boundary: str) -> str:
    return f"multipart/form-data; boundary={boundary}"


def memory(field: str) -> int:
    """VmRSS (resident now) or VmHWM (peak resident) of this process, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/self/status")


def reset_peak_memory() -> bool:
    """Restart VmHWM from the current RSS (Linux: `5` to clear_refs), so the peak is this request's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def spool_files(settings: Settings) -> list[Path]:
    folder = settings.data_dir / "uploads-in-progress"
    return list(folder.iterdir()) if folder.exists() else []


def stored_objects(settings: Settings) -> list[Path]:
    return [path for path in settings.files_dir.rglob("*") if path.is_file()] if settings.files_dir.exists() else []


async def file_rows(engine: AsyncEngine, user_id: str) -> list[File]:
    async with open_session(engine) as db:
        return list((await db.exec(select(File).where(File.user_id == uuid.UUID(user_id)))).all())


HUGE_BODIES = [
    ("webhook", "/api/payments/webhooks/PAYPAL", b'{"event_type": "', b"A", 400 * MB, "webhook"),
    ("contact", "/api/contact", b'{"name": "Ada", "email": "ada@example.com", "message": "', b"a", 200 * MB, "request"),
]
DECLARED = ["chunked", "true huge Content-Length", "lying small Content-Length"]


@pytest.mark.parametrize("declared", DECLARED)
@pytest.mark.parametrize(
    ("route", "path", "prefix", "filler", "total", "what"), HUGE_BODIES, ids=[b[0] for b in HUGE_BODIES]
)
async def test_a_huge_body_is_refused_413_without_being_read(
    api: httpx.AsyncClient, route: str, path: str, prefix: bytes, filler: bytes, total: int, what: str, declared: str
) -> None:
    headers = {"Content-Type": "application/json"}
    if declared == "true huge Content-Length":
        headers["Content-Length"] = str(total)
    elif declared == "lying small Content-Length":
        headers["Content-Length"] = "1000"
    await api.post(path, json={})  # warm up the route's code paths, so that what grows is this request's
    body = LazyBody(prefix, filler, total)
    before = memory("VmRSS")
    peak_is_this_request = reset_peak_memory()

    response = await api.post(path, content=body, headers=headers)

    grown = (memory("VmHWM") if peak_is_this_request else memory("VmRSS")) - before
    assert response.status_code == 413, response.text
    assert response.json()["error"] == f"The {what} body is larger than the limit of 1 MB"
    assert response.json()["success"] is False
    assert body.sent <= MB + CHUNK, f"the server read {body.sent} bytes of a body it had to refuse"
    if declared == "true huge Content-Length":
        assert body.sent == 0, "a declared length over the limit is refused before anything is read"
    assert grown < 20 * MB, f"memory grew by {grown / MB:.1f} MB"


async def test_a_body_within_the_limit_is_not_refused_for_its_size(make_app: AppFactory) -> None:
    async with serve(make_app(max_json_body_bytes=4096)) as api:
        at_limit = await api.post(
            "/api/contact",
            content=b'{"name": "' + b"a" * (4096 - 12) + b'"}',
            headers={"Content-Type": "application/json"},
        )
        over = await api.post(
            "/api/contact",
            content=b'{"name": "' + b"a" * (4096 - 11) + b'"}',
            headers={"Content-Type": "application/json"},
        )
    assert at_limit.status_code == 422, at_limit.text  # read and validated: only its fields are wrong
    assert over.status_code == 413, over.text
    assert over.json()["error"] == "The request body is larger than the limit of 0.00390625 MB"


async def test_an_upload_body_past_the_file_limit_and_its_framing_is_refused_unread(
    make_app: AppFactory, settings: Settings
) -> None:
    """The file part's own limit is checked by the upload; the whole body's limit (file limit + 64 KB) holds even
    when the bytes are not in the file part at all."""
    async with serve(make_app(file_max_bytes=1024)) as api:
        token = (await register_and_login(api))["access_token"]
        boundary = uuid.uuid4().hex
        note = f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\n'.encode()
        preamble = LazyBody(note, b"x", 100 * MB)  # a field that is not the file, and never ends
        response = await api.post(
            "/api/files/upload", content=preamble, headers={**bearer(token), "Content-Type": form_type(boundary)}
        )
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "The file is larger than the limit of 0.000976562 MB"
    assert preamble.sent <= 1024 + 64 * 1024 + CHUNK
    assert spool_files(settings) == []


async def test_three_hundred_thousand_empty_parts_are_refused_in_well_under_a_second(api: httpx.AsyncClient) -> None:
    """Refused within the first chunk read: parsing stops at the 17th part instead of going through them all."""
    token = (await register_and_login(api))["access_token"]
    boundary = uuid.uuid4().hex
    empty_part = f"--{boundary}\r\n\r\n\r\n".encode()  # no headers, no data, no file
    parts = LazyBody(b"", empty_part, 300_000 * len(empty_part))
    response = await api.post(
        "/api/files/upload", content=parts, headers={**bearer(token), "Content-Type": form_type(boundary)}
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "The form has more than 16 parts; send the file in one 'file' part"
    assert parts.sent <= CHUNK


async def test_a_part_with_huge_headers_is_refused(api: httpx.AsyncClient, settings: Settings) -> None:
    token = (await register_and_login(api))["access_token"]
    boundary = uuid.uuid4().hex
    padding = b"".join(b"X-Padding-%d: " % n + b"p" * 3000 + b"\r\n" for n in range(3))  # each line is allowed
    head = form_head(boundary).replace(b"\r\n\r\n", b"\r\n" + padding + b"\r\n", 1)
    response = await api.post(
        "/api/files/upload",
        content=head + PNG + form_tail(boundary),
        headers={**bearer(token), "Content-Type": form_type(boundary)},
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "A part's headers are longer than 8 KB"
    assert spool_files(settings) == []


async def test_an_idle_upload_is_cut_off_with_408_and_leaves_nothing(
    make_app: AppFactory, settings: Settings, engine: AsyncEngine, temporal: Client, worker: object
) -> None:
    async with serve(make_app(upload_idle_seconds=1)) as api:
        account = await register_and_login(api)
        token, user_id = account["access_token"], account["user"]["id"]
        boundary = uuid.uuid4().hex
        never = asyncio.Event()
        first_part_read = asyncio.Event()

        async def stalls() -> AsyncIterator[bytes]:
            yield form_head(boundary) + PNG[:64]
            first_part_read.set()
            await never.wait()  # the client stops sending, and never goes away
            yield PNG[64:] + form_tail(boundary)

        response = await api.post(
            "/api/files/upload", content=stalls(), headers={**bearer(token), "Content-Type": form_type(boundary)}
        )
        assert first_part_read.is_set()
        assert response.status_code == 408, response.text
        assert response.json()["error"] == "The upload sent nothing for 1 seconds and was cut off"
        assert spool_files(settings) == []
        assert stored_objects(settings) == []
        assert await file_rows(engine, user_id) == []

        # A complete upload afterwards: once its retention workflow is visible, it is the user's only one.
        after = await api.post(
            "/api/files/upload",
            content=form_head(boundary) + PNG + form_tail(boundary),
            headers={**bearer(token), "Content-Type": form_type(boundary)},
        )
        assert after.status_code == 201, after.text

    async def retention_workflows() -> list[str]:
        query = f"StatexUserId = '{user_id}' AND WorkflowType = 'FileRetentionWorkflow'"  # not its account's emails
        return [wf.id async for wf in temporal.list_workflows(query)]

    workflows = await eventually(retention_workflows, what="the later upload's retention workflow is listed")
    assert len(workflows) == 1, workflows
    assert len(await file_rows(engine, user_id)) == 1
    assert len(stored_objects(settings)) == 1


async def test_a_third_upload_at_once_is_refused_before_its_body_is_read(
    make_app: AppFactory, settings: Settings, worker: object
) -> None:
    async with serve(make_app(**WITH_TRANSCRIBER)) as api:
        token = (await register_and_login(api))["access_token"]
        released = asyncio.Event()
        reading = [asyncio.Event(), asyncio.Event()]

        async def held(boundary: str, first_part_read: asyncio.Event) -> AsyncIterator[bytes]:
            yield form_head(boundary) + PNG[:64]
            first_part_read.set()
            await released.wait()
            yield PNG[64:] + form_tail(boundary)

        def post(path: str, body: AsyncIterator[bytes] | bytes, boundary: str) -> asyncio.Task[httpx.Response]:
            headers = {**bearer(token), "Content-Type": form_type(boundary)}
            return asyncio.create_task(api.post(path, content=body, headers=headers))

        in_flight = []
        for first_part_read in reading:
            boundary = uuid.uuid4().hex
            in_flight.append(post("/api/files/upload", held(boundary, first_part_read), boundary))
        async with asyncio.timeout(20):
            await asyncio.gather(*(event.wait() for event in reading))

        asked_for: list[str] = []

        async def watched(path: str) -> AsyncIterator[bytes]:
            asked_for.append(path)
            yield form_head("x") + PNG + form_tail("x")

        third = await post("/api/files/upload", watched("/api/files/upload"), "x")
        voice = await post("/api/ai/voice", watched("/api/ai/voice"), "x")
        for refused in (third, voice):
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"] == (
                "You already have 2 uploads in progress; send this one when one of them has finished"
            )
            assert refused.json()["retryAfter"] == 1 and refused.headers["Retry-After"] == "1"
        assert asked_for == [], "the refused uploads' bodies were read"

        released.set()
        assert [response.status_code for response in await asyncio.gather(*in_flight)] == [201, 201]
        boundary = uuid.uuid4().hex
        again = await post("/api/files/upload", form_head(boundary) + PNG + form_tail(boundary), boundary)
        assert again.status_code == 201, again.text  # the slots are free again
    assert spool_files(settings) == []


async def test_a_deeply_nested_json_upload_is_a_4xx(api: httpx.AsyncClient, settings: Settings) -> None:
    token = (await register_and_login(api))["access_token"]
    boundary = uuid.uuid4().hex
    nested = b"[" * 100_000 + b"]" * 100_000
    response = await api.post(
        "/api/files/upload",
        content=form_head(boundary, "deep.json", "application/json") + nested + form_tail(boundary),
        headers={**bearer(token), "Content-Type": form_type(boundary)},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "The JSON file is nested too deeply to be read"
    assert spool_files(settings) == []
    assert stored_objects(settings) == []
