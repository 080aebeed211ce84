"""Files: upload, list, download, delete, and what is refused (nothing stored when refused)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from conftest import AppFactory, executable
from fastapi import FastAPI
from helpers import PNG, bearer, eventually, multipart, register_and_login, serve, stored_objects, upload
from payload_keys import CONVERTER
from pydantic import SecretStr
from servers import free_port
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.storage import CHUNK_BYTES, Storage, download_token_allows, sign_download
from api.app import create_app
from models import search_attributes
from models.db import open_session
from models.tables import File
from models.types import utcnow
from services.security import issue_access_token
from settings import Settings
from workflows.retention import FileRetentionWorkflow


async def rows_of(engine: AsyncEngine, user_id: str) -> list[File]:
    async with open_session(engine) as db:
        return list((await db.exec(select(File).where(File.user_id == uuid.UUID(user_id)))).all())


async def test_upload_download_list_and_delete(
    api: httpx.AsyncClient, worker: object, temporal: Client, settings: Settings, engine: AsyncEngine
) -> None:
    account = await register_and_login(api)
    token = account["access_token"]
    response = await upload(api, token, PNG, name="Návrh aplikace.png")
    assert response.status_code == 201, response.text
    uploaded = response.json()
    assert set(uploaded) == {"fileId", "url", "downloadLink", "size", "expiresAt"}
    assert uploaded["size"] == len(PNG)
    assert uploaded["url"] == f"/api/files/{uploaded['fileId']}"

    [row] = await rows_of(engine, account["user"]["id"])
    assert row.sha256 == hashlib.sha256(PNG).hexdigest()
    assert row.storage_key == f"uploads/{row.id}"  # the server's key: no trace of the user's file name
    assert abs(row.expires_at - (utcnow() + timedelta(hours=24))) < timedelta(minutes=1)
    assert (settings.files_dir / row.storage_key).read_bytes() == PNG

    handle = temporal.get_workflow_handle_for(FileRetentionWorkflow.run, f"file-{row.id}")
    assert (await handle.query(FileRetentionWorkflow.status)).deletes_at == row.expires_at
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert metadata.current_details == f"Deletes {row.storage_key} at {row.expires_at:%Y-%m-%d %H:%M:%S} UTC"
    description = await handle.describe()
    assert description.typed_search_attributes.get(search_attributes.USER_ID) == account["user"]["id"]

    download = await api.get(uploaded["url"], headers=bearer(token))
    assert download.status_code == 200
    assert download.content == PNG
    assert download.headers["content-type"] == "image/png"
    assert download.headers["content-disposition"] == (
        "attachment; filename=\"N_vrh aplikace.png\"; filename*=UTF-8''N%C3%A1vrh%20aplikace.png"
    )

    listed = (await api.get("/api/files", headers=bearer(token))).json()
    assert [item["fileId"] for item in listed] == [uploaded["fileId"]]
    assert listed[0]["name"] == "Návrh aplikace.png"

    deleted = await api.delete(uploaded["url"], headers=bearer(token))
    assert deleted.status_code == 200
    assert deleted.json() == {"fileId": uploaded["fileId"], "deleted": True}
    assert stored_objects(settings) == []
    assert (await api.get(uploaded["url"], headers=bearer(token))).status_code == 410
    assert (await api.get("/api/files", headers=bearer(token))).json() == []
    status = await handle.query(FileRetentionWorkflow.status)
    assert status.deleted_early and status.deleted_at is not None


async def test_someone_elses_file_is_not_found(api: httpx.AsyncClient, worker: object) -> None:
    owner, stranger = await register_and_login(api), await register_and_login(api)
    file_url = (await upload(api, owner["access_token"], PNG)).json()["url"]
    for method in ("GET", "DELETE"):
        response = await api.request(method, file_url, headers=bearer(stranger["access_token"]))
        assert response.status_code == 404
        assert response.json()["error"] == "File not found"
    assert (await api.get(file_url, headers=bearer(owner["access_token"]))).status_code == 200


async def test_forged_ids_are_refused(api: httpx.AsyncClient) -> None:
    token = (await register_and_login(api))["access_token"]
    assert (await api.get(f"/api/files/{uuid.uuid4()}", headers=bearer(token))).status_code == 404
    forged = await api.get("/api/files/..%2F..%2Fetc%2Fpasswd", headers=bearer(token))
    assert forged.status_code in {404, 422}
    not_uuid = await api.get("/api/files/not-a-uuid", headers=bearer(token))
    assert not_uuid.status_code == 422
    assert "file_id" in not_uuid.json()["error"]


REFUSED: list[tuple[str, dict[str, object], int, str]] = [
    ("empty file", {"content": b""}, 422, "The file is empty"),
    (
        "type not accepted",
        {"content": b"MZ\x90\x00", "content_type": "application/x-msdownload"},
        415,
        "Files of type 'application/x-msdownload' are not accepted",
    ),
    (
        "bytes are not the declared type",
        {"content": b"just some text, not an image"},
        415,
        "The file's content is not image/png",
    ),
    (
        "text that is binary",
        {"content": b"\x00\x01\x02binary", "content_type": "text/plain", "name": "a.txt"},
        415,
        "contains binary data",
    ),
    (
        "text that is not UTF-8",
        {"content": b"caf\xe9 au lait", "content_type": "text/csv", "name": "a.csv"},
        415,
        "not valid UTF-8",
    ),
    (
        "json that is not json",
        {"content": b"{nope", "content_type": "application/json", "name": "a.json"},
        415,
        "not valid JSON",
    ),
    ("path in the name", {"name": "../../etc/passwd.png"}, 422, "without folders"),
    ("NUL in the name", {"name": "evil\x00.png"}, 422, "control characters"),
    ("300-character name", {"name": "a" * 296 + ".png"}, 422, "longer than 255 characters"),
]


@pytest.mark.parametrize(("case", "upload_args", "status", "message"), REFUSED, ids=[case[0] for case in REFUSED])
async def test_bad_uploads_are_refused_and_nothing_is_stored(
    api: httpx.AsyncClient,
    settings: Settings,
    engine: AsyncEngine,
    case: str,
    upload_args: dict[str, object],
    status: int,
    message: str,
) -> None:
    account = await register_and_login(api)
    args = {"content": PNG, **upload_args}
    response = await upload(api, account["access_token"], **args)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert stored_objects(settings) == []
    assert await rows_of(engine, account["user"]["id"]) == []
    assert list((settings.data_dir / "uploads-in-progress").glob("*")) == []


async def test_oversize_upload_is_413(make_app: AppFactory, settings: Settings) -> None:
    async with serve(make_app(file_max_bytes=1024)) as api:
        token = (await register_and_login(api))["access_token"]
        response = await upload(api, token, PNG + b"\x00" * 2048)
        assert response.status_code == 413
        assert response.json()["error"] == "The file is larger than the limit of 0.000976562 MB"
    assert stored_objects(settings) == []
    assert list((settings.data_dir / "uploads-in-progress").glob("*")) == []


async def test_requests_without_a_file_are_refused(api: httpx.AsyncClient) -> None:
    token = (await register_and_login(api))["access_token"]
    no_file = await api.post(
        "/api/files/upload", data={"note": "hello"}, files={"other": ("x.png", PNG)}, headers=bearer(token)
    )
    assert no_file.status_code == 422
    assert "No file" in no_file.json()["error"]
    not_multipart = await api.post("/api/files/upload", json={"file": "aGVsbG8="}, headers=bearer(token))
    assert not_multipart.status_code == 415
    field_not_file = await api.post(
        "/api/files/upload", data={"file": "just text"}, files={"other": ("x.png", PNG)}, headers=bearer(token)
    )
    assert field_not_file.status_code == 422
    assert "must be a file" in field_not_file.json()["error"]
    broken = await api.post(
        "/api/files/upload",
        content=(
            b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n\x89PNG"
        ),
        headers={**bearer(token), "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert broken.status_code == 400
    assert "closing boundary" in broken.json()["error"]
    anonymous = await api.post("/api/files/upload", files={"file": ("a.png", PNG, "image/png")})
    assert anonymous.status_code == 401


async def test_ten_uploads_a_day_and_refusals_do_not_count(make_app: AppFactory, worker: object) -> None:
    async with serve(make_app(rate_limit_upload="3/day")) as api:
        token = (await register_and_login(api))["access_token"]
        for _ in range(3):
            assert (await upload(api, token, b"not a png")).status_code == 415
        statuses = [(await upload(api, token, PNG)).status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]


def test_openapi_documents_the_upload_form(make_app: AppFactory) -> None:
    schema = make_app().openapi()
    body = schema["paths"]["/api/files/upload"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["properties"]["file"] == {"type": "string", "format": "binary"}


def test_openapi_names_each_file_operation_and_its_errors(make_app: AppFactory) -> None:
    paths = make_app().openapi()["paths"]
    operations = {
        ("/api/files/upload", "post"): ("files-upload", {"400", "401", "413", "415", "422", "429", "503"}),
        ("/api/files", "get"): ("files-list", {"401", "429"}),
        ("/api/files/{file_id}", "get"): ("files-download", {"307", "401", "404", "410", "422"}),
        ("/api/files/{file_id}", "delete"): ("files-delete", {"202", "401", "404", "410", "503"}),
    }
    for (path, method), (operation_id, statuses) in operations.items():
        operation = paths[path][method]
        assert operation["operationId"] == operation_id
        assert statuses <= set(operation["responses"]), (operation_id, sorted(operation["responses"]))


async def test_no_retention_workflow_means_no_upload(settings: Settings, engine: AsyncEngine) -> None:
    """Temporal is down: the upload fails clearly and leaves no object, no row and no temporary file."""
    doomed = await WorkflowEnvironment.start_local(
        port=free_port(), dev_server_existing_path=executable("temporal"), data_converter=CONVERTER, ui=False
    )
    async with serve(create_app(settings, temporal=doomed.client)) as api:
        account = await register_and_login(api)
        await doomed.shutdown()
        response = await upload(api, account["access_token"], PNG)
    assert response.status_code == 503
    assert stored_objects(settings) == []
    assert await rows_of(engine, account["user"]["id"]) == []
    assert list((settings.data_dir / "uploads-in-progress").glob("*")) == []


def test_download_links_are_for_one_file_until_it_expires(settings: Settings) -> None:
    file_id = uuid.uuid4()
    valid = sign_download(settings, file_id, utcnow() + timedelta(hours=1))
    assert download_token_allows(settings, valid, file_id)
    assert not download_token_allows(settings, valid, uuid.uuid4())
    assert not download_token_allows(
        settings, sign_download(settings, file_id, utcnow() - timedelta(seconds=1)), file_id
    )
    other_secret = settings.model_copy(update={"jwt_secret": SecretStr("z" * 48)})
    assert not download_token_allows(other_secret, valid, file_id)
    access_token, _ = issue_access_token(settings, file_id, uuid.uuid4())
    assert not download_token_allows(settings, access_token, file_id)


async def test_a_download_link_needs_no_sign_in_but_only_opens_its_file(
    api: httpx.AsyncClient, worker: object, settings: Settings
) -> None:
    token = (await register_and_login(api))["access_token"]
    file_id = uuid.UUID((await upload(api, token, PNG)).json()["fileId"])
    link = sign_download(settings, file_id, utcnow() + timedelta(hours=1))
    assert (await api.get(f"/api/files/{file_id}", params={"token": link})).content == PNG
    assert (await api.get(f"/api/files/{file_id}")).status_code == 401
    assert (await api.delete(f"/api/files/{file_id}", params={"token": link})).status_code == 401


async def test_the_browser_link_in_a_listing_downloads_without_a_header_until_the_file_is_deleted(
    make_app: AppFactory, worker: object
) -> None:
    async with serve(make_app(public_api_url="http://testserver")) as api:
        token = (await register_and_login(api))["access_token"]
        uploaded = (await upload(api, token, PNG)).json()
        [listed] = (await api.get("/api/files", headers=bearer(token))).json()
        for link in (uploaded["downloadLink"], listed["downloadLink"]):
            assert link.startswith(f"http://testserver/api/files/{uploaded['fileId']}?token=")
            response = await api.get(link)  # no Authorization header, as an <a href> in a browser
            assert (response.status_code, response.content) == (200, PNG)
        assert (await api.delete(uploaded["url"], headers=bearer(token))).status_code == 200
        assert (await api.get(listed["downloadLink"])).status_code == 410


async def test_an_expired_browser_link_is_refused(make_app: AppFactory, worker: object) -> None:
    async with serve(make_app(public_api_url="http://testserver", file_download_url_seconds=1)) as api:
        token = (await register_and_login(api))["access_token"]
        link = (await upload(api, token, PNG)).json()["downloadLink"]
        refused = await eventually(lambda: _refused(api, link), within=10, what="the one-second link to expire")
        assert refused.status_code == 401


async def _refused(api: httpx.AsyncClient, link: str) -> httpx.Response | None:
    response = await api.get(link)
    return response if response.status_code != 200 else None


# --- one database connection for the whole API: a request that waits on the network must not hold it --------


class HeldDownloads:
    """Storage whose downloads stop after their first chunk until released: a slow client, mid-body."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.name = storage.name
        self.first_chunk_sent = asyncio.Event()
        self.release = asyncio.Event()

    async def put_file(self, key: str, source: Path, content_type: str) -> None:
        await self.storage.put_file(key, source, content_type)

    async def delete(self, key: str) -> None:
        await self.storage.delete(key)

    async def exists(self, key: str) -> bool:
        return await self.storage.exists(key)

    async def aclose(self) -> None:
        await self.storage.aclose()

    async def download_url(self, key: str, filename: str, content_type: str, expires_in: int) -> str | None:
        return await self.storage.download_url(key, filename, content_type, expires_in)

    async def open(self, key: str) -> AsyncIterator[bytes]:
        return self._held(await self.storage.open(key))

    async def _held(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield chunk
            if not self.first_chunk_sent.is_set():  # runs once the server asks for the second chunk
                self.first_chunk_sent.set()
                await self.release.wait()


@pytest.fixture
async def one_connection(make_app: AppFactory) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An API with a pool of exactly one connection that gives up after a second: a held one shows at once."""
    app = make_app(database_pool_size=1, database_pool_overflow=0, database_pool_timeout_seconds=1)
    async with serve(app) as api:
        yield app, api


async def reached(event: asyncio.Event, request: asyncio.Task[httpx.Response], what: str) -> None:
    """Wait until `event` is set, failing at once (with the answer) if the request ended before it."""

    async def probe() -> bool:
        if request.done():
            raise AssertionError(f"the request ended before {what}: {request.result().text}")
        return event.is_set()

    await eventually(probe, within=10, what=what)


async def test_an_upload_in_flight_holds_no_database_connection(
    one_connection: tuple[FastAPI, httpx.AsyncClient], worker: object
) -> None:
    _, api = one_connection
    uploader, other = await register_and_login(api), await register_and_login(api)
    head, tail, form_type = multipart(PNG, "slow.png", "image/png")
    first_part_read, release = asyncio.Event(), asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield head + PNG[:64]
        first_part_read.set()  # runs only once the server has read the first part and asks for more
        await release.wait()
        yield PNG[64:] + tail

    headers = {**bearer(uploader["access_token"]), "Content-Type": form_type}
    sending = asyncio.create_task(api.post("/api/files/upload", content=slow_body(), headers=headers))
    await reached(first_part_read, sending, "the server read the first part")

    listed = await api.get("/api/files", headers=bearer(other["access_token"]))
    assert listed.status_code == 200, listed.text

    release.set()
    uploaded = await sending
    assert uploaded.status_code == 201, uploaded.text


async def test_a_download_in_flight_holds_no_database_connection(
    one_connection: tuple[FastAPI, httpx.AsyncClient], worker: object
) -> None:
    app, api = one_connection
    owner, other = await register_and_login(api), await register_and_login(api)
    large = PNG + bytes(3 * CHUNK_BYTES)
    file_url = (await upload(api, owner["access_token"], large)).json()["url"]
    held = HeldDownloads(app.state.runtime.storage)
    app.state.runtime = dataclasses.replace(app.state.runtime, storage=held)

    downloading = asyncio.create_task(api.get(file_url, headers=bearer(owner["access_token"])))
    await reached(held.first_chunk_sent, downloading, "the first chunk was sent")

    listed = await api.get("/api/files", headers=bearer(other["access_token"]))
    assert listed.status_code == 200, listed.text

    held.release.set()
    downloaded = await downloading
    assert downloaded.status_code == 200
    assert downloaded.content == large
