"""File storage: a local folder (embedded default) or Cloudflare R2 through boto3's S3 client.

Keys are the server's own (`uploads/<file id>`); the user's file name never reaches a key or a path. Deleting
a missing object is success, so the retention workflow's delete activity can be retried freely.

Residency is part of the key: an EU_COMPLIANCE user's object is `eu/uploads/<file id>`, and RegionalStorage
sends such keys to the EU-jurisdiction bucket. Every activity and message keeps carrying one string, so
running workflows and stored histories are unaffected, and the File row's key says where the object is.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import jwt
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import boto_config
from settings import Settings

CHUNK_BYTES = 256 * 1024
DOWNLOAD_TOKEN_TYPE = "download"  # the `typ` of a link issued as a JWT (before `d1.`)

# S3 errors that another attempt cannot fix: wrong credentials, missing bucket, no permission.
_PERMANENT_S3_ERRORS = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket"})


EU_PREFIX = "eu/"


def storage_key(file_id: object, eu: bool = False) -> str:
    """The object's key; `eu`: kept in the EU (an EU_COMPLIANCE user's file)."""
    return f"{EU_PREFIX if eu else ''}uploads/{file_id}"


def eu_storage_configured(settings: Settings) -> bool:
    return settings.r2_eu_bucket is not None


def eu_residency_missing(settings: Settings) -> bool:
    """Production on R2 with no EU bucket: an EU object would sit in the default (not EU-restricted) bucket.
    The local folder is the machine's own disk, so there is nothing to refuse there."""
    return settings.is_production and settings.storage_backend == "r2" and not eu_storage_configured(settings)


LINK_PREFIX = "d1."
_LINK_DIGITS = 12  # an expiry in Unix seconds, up to year 33658: longer is malformed, not parsed


def sign_download(settings: Settings, file_id: uuid.UUID, expires_at: datetime) -> str:
    """A token that lets whoever holds the link fetch this one file until it expires: what an email carries,
    since the reader of an email has no access token at hand. `d1.<expiry>.<HMAC-SHA256>`: a file list signs
    one per file, and an HMAC costs microseconds where a JWT encode costs a hundred."""
    expiry = int(expires_at.timestamp())
    return f"{LINK_PREFIX}{expiry}.{_link_mac(settings, file_id, expiry)}"


def download_token_allows(settings: Settings, token: str, file_id: uuid.UUID) -> bool:
    """For `file_id` and not expired. Links issued before `d1.` (JWTs, in emails valid up to their expiry)
    are still checked as they were signed."""
    if not token.startswith(LINK_PREFIX):
        return _legacy_download_token_allows(settings, token, file_id)
    expiry, dot, mac = token.removeprefix(LINK_PREFIX).partition(".")
    if not dot or not expiry.isascii() or not expiry.isdigit() or len(expiry) > _LINK_DIGITS:
        return False
    # Compared in constant time before the expiry is trusted: a forged expiry never gets as far as the clock.
    genuine = hmac.compare_digest(mac.encode(), _link_mac(settings, file_id, int(expiry)).encode())
    return genuine and int(expiry) > time.time()


def _link_mac(settings: Settings, file_id: uuid.UUID, expiry: int) -> str:
    message = b"%s\x00%s\x00%d" % (settings.jwt_issuer.encode(), file_id.bytes, expiry)
    digest = hmac.new(_link_key(settings.jwt_secret.get_secret_value()), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@functools.lru_cache(maxsize=4)
def _link_key(secret: str) -> bytes:
    """A key of its own derived from JWT_SECRET, so that no other token signed with the secret (an access
    token) can ever pass for a link, nor a link for one."""
    return hmac.new(secret.encode(), b"statex download link", hashlib.sha256).digest()


def _legacy_download_token_allows(settings: Settings, token: str, file_id: uuid.UUID) -> bool:
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[settings.jwt_algorithm],
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "sub", "typ"]},
        )
    except jwt.InvalidTokenError:
        return False
    return claims["typ"] == DOWNLOAD_TOKEN_TYPE and claims["sub"] == str(file_id)


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """`attachment` (or `inline`) with an ASCII fallback and the UTF-8 name (RFC 6266), so no name can break the
    header."""
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in filename) or "download"
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


class Storage(Protocol):
    name: str

    async def put_file(self, key: str, source: Path, content_type: str) -> None: ...

    async def delete(self, key: str) -> None:
        """Remove the object; a missing object is success."""

    async def exists(self, key: str) -> bool: ...

    async def open(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks; raises FileNotFoundError before the first chunk if it is gone."""

    async def download_url(self, key: str, filename: str, content_type: str, expires_in: int) -> str | None:
        """A link the client can fetch directly, or None when the API streams the content itself."""

    async def aclose(self) -> None:
        """Release the client's pooled connections: the worker and the API do this on shutdown."""


class LocalStorage:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"storage key outside the storage folder: {key!r}")
        return path

    async def put_file(self, key: str, source: Path, content_type: str) -> None:
        target = self._path(key)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.copyfile, source, target)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def open(self, key: str) -> AsyncIterator[bytes]:
        return _chunks(await asyncio.to_thread(open, self._path(key), "rb"))

    async def download_url(self, key: str, filename: str, content_type: str, expires_in: int) -> str | None:
        return None

    async def aclose(self) -> None:
        pass  # no client to close


class R2Storage:
    """R2 speaks the S3 API. Region `auto`; checksums only when an operation requires them, because R2 rejects
    some of the CRC checksums newer boto3 versions send by default. One client per process (boto3 clients are
    thread-safe), its connection pool reused by every call."""

    name = "r2"

    def __init__(self, settings: Settings, *, eu: bool = False) -> None:
        """`eu`: the EU-jurisdiction bucket (R2_EU_*), its keys falling back to the default ones."""
        if eu:
            bucket, endpoint_url = settings.r2_eu_bucket, settings.r2_eu_endpoint_url
            access_key_id = settings.r2_eu_access_key_id or settings.r2_access_key_id
            secret_access_key = settings.r2_eu_secret_access_key or settings.r2_secret_access_key
        else:
            bucket, endpoint_url = settings.r2_bucket, settings.r2_endpoint_url
            access_key_id, secret_access_key = settings.r2_access_key_id, settings.r2_secret_access_key
        if not bucket:
            missing = "R2_EU_BUCKET" if eu else "R2_BUCKET"
            raise ValueError(f"STORAGE_BACKEND=r2 needs {missing} (and its endpoint and keys)")
        self.bucket = bucket
        import boto3  # here, not at the top: an API or worker on local storage never loads boto3

        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name="auto",
            aws_access_key_id=_secret(access_key_id),
            aws_secret_access_key=_secret(secret_access_key),
            config=boto_config(
                signature_version="s3v4",
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                connect_timeout=5,
                read_timeout=60,
            ),
        )

    async def put_file(self, key: str, source: Path, content_type: str) -> None:
        await self._call(
            self.client.upload_file, str(source), self.bucket, key, ExtraArgs={"ContentType": content_type}
        )

    async def delete(self, key: str) -> None:
        await self._call(self.client.delete_object, Bucket=self.bucket, Key=key)  # S3: missing is success

    async def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    async def open(self, key: str) -> AsyncIterator[bytes]:
        from botocore.exceptions import ClientError

        try:
            response = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in {"404", "NoSuchKey"}:
                raise FileNotFoundError(key) from err
            raise
        return _chunks(response["Body"])

    async def download_url(self, key: str, filename: str, content_type: str, expires_in: int) -> str | None:
        return await asyncio.to_thread(
            self.client.generate_presigned_url,
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentDisposition": content_disposition(filename),
                "ResponseContentType": content_type,
            },
            ExpiresIn=expires_in,
        )

    async def aclose(self) -> None:
        self.client.close()

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(method, *args, **kwargs)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "Unknown")
            raise ApplicationError(
                f"R2 refused {method.__name__}: {code}",
                type="StorageRefused",
                non_retryable=code in _PERMANENT_S3_ERRORS,
            ) from err
        except BotoCoreError as err:
            raise ApplicationError(f"R2 unreachable: {err}", type="StorageUnreachable") from err


async def _chunks(stream: Any) -> AsyncIterator[bytes]:
    """Read a blocking file-like object in a thread, chunk by chunk, and close it however the reader stops."""
    try:
        while chunk := await asyncio.to_thread(stream.read, CHUNK_BYTES):
            yield chunk
    finally:
        stream.close()


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


class RegionalStorage:
    """Keys under `eu/` go to the EU backend, every other key to the default one."""

    def __init__(self, default: Storage, eu: Storage) -> None:
        self.default = default
        self.eu = eu
        self.name = default.name

    def _for(self, key: str) -> Storage:
        return self.eu if key.startswith(EU_PREFIX) else self.default

    async def put_file(self, key: str, source: Path, content_type: str) -> None:
        await self._for(key).put_file(key, source, content_type)

    async def delete(self, key: str) -> None:
        await self._for(key).delete(key)

    async def exists(self, key: str) -> bool:
        return await self._for(key).exists(key)

    async def open(self, key: str) -> AsyncIterator[bytes]:
        return await self._for(key).open(key)

    async def download_url(self, key: str, filename: str, content_type: str, expires_in: int) -> str | None:
        return await self._for(key).download_url(key, filename, content_type, expires_in)

    async def aclose(self) -> None:
        await self.default.aclose()
        await self.eu.aclose()


def build_storage(settings: Settings) -> Storage:
    default: Storage = R2Storage(settings) if settings.storage_backend == "r2" else LocalStorage(settings.files_dir)
    if eu_storage_configured(settings):
        return RegionalStorage(default, R2Storage(settings, eu=True))
    return default


class StorageActivities:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @activity.defn
    async def delete_object(self, key: str) -> None:
        """Idempotent: deleting what is already gone succeeds."""
        await self.storage.delete(key)
