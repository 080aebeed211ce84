"""EU residency for files: an EU_COMPLIANCE user's uploads and generated zips are kept in the EU-jurisdiction
bucket (`eu/` keys), everyone else's in the default one; two buckets on a moto S3 server stand in for R2's."""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from ai.support import finished, service, sign_in
from botocore.exceptions import ClientError
from helpers import eventually
from payload_keys import PAYLOAD_KEYS
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from activities.storage import LocalStorage, R2Storage, RegionalStorage, build_storage, storage_key
from models.db import open_session
from models.enums import PrototypeStatus, ServiceTier
from models.tables import File
from models.types import utcnow
from services.accounts import Account
from services.errors import Unavailable
from services.files import kept_in_eu
from settings import Settings

CONTENT = b"%PDF-1.7\n" + bytes(range(256)) * 40
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class Buckets:
    """The default and the EU bucket, as a test reads them behind the service's back."""

    def __init__(self, moto_url: str) -> None:
        self.s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", **CREDENTIALS)
        self.default = f"statex-{uuid.uuid4().hex[:12]}"
        self.eu = f"statex-eu-{uuid.uuid4().hex[:12]}"
        for bucket in (self.default, self.eu):
            self.s3.create_bucket(Bucket=bucket)

    def holds(self, bucket: str, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError:
            return False
        return True


@pytest.fixture
def buckets(moto_url: str) -> Buckets:
    return Buckets(moto_url)


@pytest.fixture
def regional_settings(settings: Settings, moto_url: str, buckets: Buckets) -> Settings:
    """R2 with an EU bucket; the EU keys are left unset, so the default ones are used for both."""
    return settings.model_copy(
        update={
            "storage_backend": "r2",
            "r2_endpoint_url": moto_url,
            "r2_bucket": buckets.default,
            "r2_access_key_id": SecretStr("testing"),
            "r2_secret_access_key": SecretStr("testing"),
            "r2_eu_endpoint_url": moto_url,
            "r2_eu_bucket": buckets.eu,
        }
    )


async def upload(api: httpx.AsyncClient, account: dict[str, Any]) -> str:
    uploaded = await api.post(
        "/api/files/upload", files={"file": ("plan.pdf", CONTENT, "application/pdf")}, headers=account["headers"]
    )
    assert uploaded.status_code == 201, uploaded.text
    return str(uploaded.json()["fileId"])


async def key_of(engine: AsyncEngine, file_id: str) -> str:
    async with open_session(engine) as db:
        file = await db.get(File, uuid.UUID(file_id))
    assert file is not None
    return file.storage_key


async def test_uploads_land_in_the_bucket_of_their_owners_region_and_download_and_delete_from_it(
    temporal: Client, engine: AsyncEngine, regional_settings: Settings, buckets: Buckets
) -> None:
    async with service(temporal, engine, regional_settings) as api:
        standard = await sign_in(api, engine)
        resident = await sign_in(api, engine, ServiceTier.EU_COMPLIANCE)
        placed = {}
        homes = [(standard, buckets.default, buckets.eu), (resident, buckets.eu, buckets.default)]
        for account, bucket, other in homes:
            file_id = await upload(api, account)
            key = await key_of(engine, file_id)
            assert key == storage_key(file_id, eu=account is resident)
            assert buckets.holds(bucket, key) and not buckets.holds(other, key)
            placed[file_id] = (account, bucket, key)

        for file_id, (account, bucket, key) in placed.items():
            redirect = await api.get(f"/api/files/{file_id}", headers=account["headers"])
            assert redirect.status_code == 307
            async with httpx.AsyncClient() as http:
                assert (await http.get(redirect.headers["location"])).content == CONTENT

            deleted = await api.delete(f"/api/files/{file_id}", headers=account["headers"])
            assert deleted.status_code in (200, 202), deleted.text
            await eventually(partial(_gone, buckets, bucket, key), what=f"{key} deleted from {bucket}")


async def _gone(buckets: Buckets, bucket: str, key: str) -> bool | None:
    return True if not buckets.holds(bucket, key) else None


async def test_an_eu_users_prototype_zip_is_kept_in_the_eu_bucket(
    temporal: Client, engine: AsyncEngine, regional_settings: Settings, buckets: Buckets
) -> None:
    async with service(temporal, engine, regional_settings) as api:
        account = await sign_in(api, engine, ServiceTier.EU_COMPLIANCE)
        accepted = await api.post(
            "/api/ai/prototype", json={"idea": "A shared shopping list for a flat."}, headers=account["headers"]
        )
        assert accepted.status_code == 202, accepted.text
        view = await finished(api, temporal, account, accepted.json()["prototype_id"])
        assert view["status"] == PrototypeStatus.COMPLETED, view
        key = await key_of(engine, view["file_id"])
        assert key == storage_key(view["file_id"], eu=True)
        assert buckets.holds(buckets.eu, key) and not buckets.holds(buckets.default, key)
        downloaded = await api.get(view["download_url"], headers=account["headers"])
        assert downloaded.status_code == 307


async def test_an_eu_users_data_export_reads_their_eu_upload_and_is_kept_in_the_eu_bucket(
    temporal: Client, engine: AsyncEngine, regional_settings: Settings, buckets: Buckets
) -> None:
    async with service(temporal, engine, regional_settings) as api:
        account = await sign_in(api, engine, ServiceTier.EU_COMPLIANCE)
        upload_id = await upload(api, account)
        started = await api.post("/api/me/export", headers=account["headers"])
        assert started.status_code == 202, started.text
        status_url = started.json()["status_url"]

        async def done() -> dict[str, Any] | None:
            view: dict[str, Any] = (await api.get(status_url, headers=account["headers"])).json()
            return view if view["status"] != "RUNNING" else None

        view = await eventually(done, within=60, what="the export")
        assert view["status"] == "COMPLETED", view
        key = await key_of(engine, view["file_id"])
        assert key == storage_key(view["file_id"], eu=True)
        assert buckets.holds(buckets.eu, key) and not buckets.holds(buckets.default, key)
        exported = buckets.s3.get_object(Bucket=buckets.eu, Key=key)["Body"].read()
    with zipfile.ZipFile(io.BytesIO(exported)) as archive:
        assert any(name.startswith(f"statex-export/files/{upload_id}/") for name in archive.namelist())


def account_of(tier: ServiceTier) -> Account:
    return Account(
        id=uuid.uuid4(), email="a@example.com", name=None, phone=None, language="en", tier=tier, created_at=utcnow()
    )


def test_production_on_r2_without_an_eu_bucket_refuses_eu_files_naming_the_setting(settings: Settings) -> None:
    production = settings.model_copy(update={"environment": "production", "storage_backend": "r2"})
    with pytest.raises(Unavailable, match="R2_EU_BUCKET"):
        kept_in_eu(production, account_of(ServiceTier.EU_COMPLIANCE))
    assert kept_in_eu(production, account_of(ServiceTier.STANDARD)) is False
    # The local folder (the embedded default) is this machine's disk: nothing leaves it, nothing is refused.
    assert kept_in_eu(settings, account_of(ServiceTier.EU_COMPLIANCE)) is True
    with_eu = production.model_copy(update={"r2_eu_bucket": "statex-eu"})
    assert kept_in_eu(with_eu, account_of(ServiceTier.EU_COMPLIANCE)) is True


async def test_an_eu_upload_with_no_eu_bucket_is_refused_before_its_body_is_read(
    temporal: Client, engine: AsyncEngine, regional_settings: Settings
) -> None:
    no_eu_bucket = regional_settings.model_copy(
        update={"environment": "production", "payload_keys": PAYLOAD_KEYS, "r2_eu_bucket": None}
    )
    sent = 0

    async def huge() -> AsyncIterator[bytes]:  # 1 GB, made only as the server asks for it
        nonlocal sent
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
        yield b"Content-Type: application/pdf\r\n\r\n"
        while sent < 1024**3:
            sent += 64 * 1024
            yield bytes(64 * 1024)

    async with service(temporal, engine, no_eu_bucket) as api:
        account = await sign_in(api, engine, ServiceTier.EU_COMPLIANCE)
        headers = {**account["headers"], "Content-Type": "multipart/form-data; boundary=x"}
        refused = await api.post("/api/files/upload", content=huge(), headers=headers)
        assert refused.status_code == 503, refused.text
        assert "R2_EU_BUCKET" in refused.json()["error"]
        assert sent == 0, f"the server read {sent} bytes of an upload it had to refuse"
        standard = await sign_in(api, engine)
        assert await upload(api, standard)  # everyone else's uploads go on


async def test_regional_storage_routes_eu_keys_to_the_eu_backend(tmp_path: Path) -> None:
    default, eu = LocalStorage(tmp_path / "default"), LocalStorage(tmp_path / "eu")
    storage = RegionalStorage(default, eu)
    source = tmp_path / "source.pdf"
    source.write_bytes(CONTENT)
    file_id = uuid.uuid4()
    for key, home, other in ((storage_key(file_id), default, eu), (storage_key(file_id, eu=True), eu, default)):
        await storage.put_file(key, source, "application/pdf")
        assert await storage.exists(key) and await home.exists(key) and not await other.exists(key)
        assert b"".join([chunk async for chunk in await storage.open(key)]) == CONTENT
        await storage.delete(key)
        assert not await home.exists(key)


def test_build_storage_adds_the_eu_bucket_only_when_it_is_set(regional_settings: Settings) -> None:
    regional = build_storage(regional_settings)
    assert isinstance(regional, RegionalStorage) and isinstance(regional.eu, R2Storage)
    assert regional.eu.bucket == regional_settings.r2_eu_bucket
    assert isinstance(build_storage(regional_settings.model_copy(update={"r2_eu_bucket": None})), R2Storage)
