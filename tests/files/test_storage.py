"""Both storage backends, the same behaviour: the local folder, and R2 through boto3 against a moto S3 server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from conftest import AppFactory
from helpers import bearer, register_and_login, serve
from pydantic import SecretStr

from activities.storage import LocalStorage, R2Storage, Storage
from settings import Settings

CONTENT = b"%PDF-1.7\n" + bytes(range(256)) * 1000


@pytest.fixture
def r2_settings(settings: Settings, moto_url: str) -> Settings:
    bucket = f"statex-{uuid.uuid4().hex[:12]}"
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", **credentials).create_bucket(Bucket=bucket)
    return settings.model_copy(
        update={
            "storage_backend": "r2",
            "r2_endpoint_url": moto_url,
            "r2_bucket": bucket,
            "r2_access_key_id": SecretStr("testing"),
            "r2_secret_access_key": SecretStr("testing"),
        }
    )


@pytest.fixture(params=["local", "r2"])
def storage(request: pytest.FixtureRequest, settings: Settings) -> Storage:
    if request.param == "local":
        return LocalStorage(settings.files_dir)
    return R2Storage(request.getfixturevalue("r2_settings"))


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def test_put_read_link_and_delete(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "source.pdf"
    source.write_bytes(CONTENT)
    key = f"uploads/{uuid.uuid4()}"
    assert not await storage.exists(key)

    await storage.put_file(key, source, "application/pdf")
    assert await storage.exists(key)
    assert await read_all(await storage.open(key)) == CONTENT

    link = await storage.download_url(key, 'Plán "v1".pdf', "application/pdf", expires_in=120)
    if storage.name == "r2":
        assert link is not None
        async with httpx.AsyncClient() as http:
            fetched = await http.get(link)
        assert fetched.status_code == 200
        assert fetched.content == CONTENT
        assert fetched.headers["content-disposition"].startswith('attachment; filename="Pl_n _v1_.pdf"')
        assert parse_qs(urlsplit(link).query)["X-Amz-Expires"] == ["120"]
    else:
        assert link is None  # the API streams local files itself

    await storage.delete(key)
    assert not await storage.exists(key)
    await storage.delete(key)  # deleting what is gone succeeds: the retention activity may be retried
    with pytest.raises(FileNotFoundError):
        await storage.open(key)


async def test_local_keys_cannot_escape_the_folder(settings: Settings) -> None:
    with pytest.raises(ValueError, match="outside the storage folder"):
        await LocalStorage(settings.files_dir).exists("../../etc/passwd")


async def test_download_from_r2_redirects_to_a_link_that_ends_before_the_file_does(
    make_app: AppFactory, r2_settings: Settings, worker: object
) -> None:
    overrides = r2_settings.model_dump(include={"storage_backend", "r2_endpoint_url", "r2_bucket"})
    overrides |= {"r2_access_key_id": SecretStr("testing"), "r2_secret_access_key": SecretStr("testing")}
    overrides |= {"file_retention_hours": 0.05, "file_download_url_seconds": 3600}  # the file lives 3 minutes
    async with serve(make_app(**overrides)) as api:
        token = (await register_and_login(api))["access_token"]
        uploaded = await api.post(
            "/api/files/upload", files={"file": ("plan.pdf", CONTENT, "application/pdf")}, headers=bearer(token)
        )
        assert uploaded.status_code == 201, uploaded.text
        redirect = await api.get(uploaded.json()["url"], headers=bearer(token))
    assert redirect.status_code == 307
    link = redirect.headers["location"]
    lifetime = int(parse_qs(urlsplit(link).query)["X-Amz-Expires"][0])
    assert 0 < lifetime <= timedelta(minutes=3).total_seconds()
    async with httpx.AsyncClient() as http:
        assert (await http.get(link)).content == CONTENT
