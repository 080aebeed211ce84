"""Files: kept 24 hours (FileRetentionWorkflow's durable timer), then deleted. Upload, list, download, delete.

Nothing is ever stored without the workflow that deletes it: the row is committed, the timer started, and
only then is the object written; if storing fails, the timer is told to delete at once.

No database connection is held while bytes move or Temporal is awaited: every read is a short unit of work
that is closed before the body streams, the object is fetched, or the retention workflow is signalled.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import col
from temporalio.service import RPCError

from activities.storage import (
    content_disposition,
    download_token_allows,
    eu_residency_missing,
    sign_download,
    storage_key,
)
from models import search_attributes
from models.api.files import FileDeletion, FileInfo, UploadedFile
from models.enums import ServiceTier
from models.messages.files import RetainedFile
from models.tables import File
from models.types import utcnow
from observability import metrics
from services.accounts import Account
from services.errors import Gone, NotFound, Unauthorized, Unavailable
from services.runtime import Service
from services.staging import staged
from services.temporal import reaching_temporal, rpc_timeout, start_workflow
from settings import Settings
from workflows.retention import START_POLICY, FileRetentionWorkflow, workflow_id


def download_path(file_id: uuid.UUID) -> str:
    """Where the owner downloads a file (GET, with the access token)."""
    return f"/api/files/{file_id}"


PICTURE_CONTENT_TYPE = "image/png"
"""The one kind of file shown in place (preview_path): a prototype's picture; anything else only downloads."""
DELETE_WAIT = timedelta(seconds=5)  # how long a DELETE waits for the object to be gone before answering 202


@dataclass(frozen=True)
class Redirect:
    """The content is fetched from storage directly (R2): a presigned link, valid at most until expiry."""

    url: str


@dataclass(frozen=True)
class Content:
    """The content streamed by the API itself (local storage), with the headers it goes out with."""

    chunks: AsyncIterator[bytes]
    media_type: str
    headers: dict[str, str]


Download = Redirect | Content


@dataclass(frozen=True)
class ReceivedFile:
    """An upload already checked and spooled to a temporary file (api/uploads.py streams it there)."""

    path: Path
    filename: str
    content_type: str
    size: int
    sha256: str
    form: Mapping[str, str] = field(default_factory=dict)
    """The form's other fields (small text values, e.g. a voice message's `review_requirements`)."""


def preview_path(file_id: uuid.UUID) -> str:
    """Where a picture (a prototype's PREVIEW.png, kept as a file of its own) is shown in place: GET with a link's
    token."""
    return f"{download_path(file_id)}/preview"


def browser_link(settings: Settings, file_id: uuid.UUID, *, shown: bool = False) -> str:
    """An absolute link that works in an `<a href>` with no Authorization header: signed for this one file,
    valid FILE_DOWNLOAD_URL_SECONDS (a deleted or expired file is refused whatever the link says). `shown`: the
    picture's link, for an `<img src>` (preview_path)."""
    expires_at = utcnow() + timedelta(seconds=settings.file_download_url_seconds)
    token = sign_download(settings, file_id, expires_at)
    path = preview_path(file_id) if shown else download_path(file_id)
    return f"{settings.public_api_url.rstrip('/')}{path}?token={token}"


def kept_in_eu(settings: Settings, owner: Account) -> bool:
    """Whether `owner`'s files (uploads, a prototype's zip, a data export) must be kept in the EU. When they
    must but production has no EU bucket, refuse (503) rather than keep them in the default bucket: storing
    elsewhere would silently break what EU_COMPLIANCE is paid for, and the operator learns which setting to add."""
    if owner.tier != ServiceTier.EU_COMPLIANCE:
        return False
    if eu_residency_missing(settings):
        raise Unavailable(
            "EU-resident file storage is not configured (R2_EU_BUCKET, R2_EU_ENDPOINT_URL): "
            "EU_COMPLIANCE files are never stored outside the EU"
        )
    return True


KEPT_FILES = (
    sa.select(
        *(
            col(column)
            for column in (
                File.id,
                File.size_bytes,
                File.expires_at,
                File.original_name,
                File.content_type,
                File.sha256,
                File.created_at,
            )
        )
    )
    .where(
        col(File.user_id) == sa.bindparam("owner"),
        col(File.deleted_at).is_(None),
        col(File.expires_at) > sa.bindparam("now"),
    )
    .order_by(col(File.created_at).desc())
)
"""An owner's files that are still kept, newest first: what a file list shows, built once."""


class FileService(Service):
    def refuse_unkeepable(self, owner: Account) -> None:
        """Called before an upload's body is read: 503 if the owner's files must be kept in the EU and there is
        nowhere to keep them, rather than after the whole body came in."""
        kept_in_eu(self.settings, owner)

    async def upload(self, received: ReceivedFile, owner: Account) -> UploadedFile:
        """Keep a received file for its owner; the caller removes the spool file."""
        async with self.keep(received, owner) as file:
            return UploadedFile(
                file_id=file.id,
                url=download_path(file.id),
                download_link=browser_link(self.settings, file.id),
                size=file.size_bytes,
                expires_at=file.expires_at,
            )

    async def list_of(self, owner: Account) -> list[FileInfo]:
        """The owner's files that are still kept, newest first."""
        rows = await self.database.fetch(KEPT_FILES, {"owner": owner.id, "now": utcnow()})  # rows, not ORM objects
        return [_info(self.settings, row) for row in rows]

    async def download(self, file_id: uuid.UUID, *, caller: Account | None, link_token: str | None) -> Download:
        """For the owner, or for whoever holds a download link for this file (no sign-in). The row is read
        and the session closed before storage is asked for a link or the content."""
        if link_token is not None:
            if not download_token_allows(self.settings, link_token, file_id):
                raise Unauthorized("The download link is invalid or has expired")
            file = await self._live_file(file_id, owner=None)
        elif caller is None:
            raise Unauthorized("Not authenticated: send 'Authorization: Bearer <access_token>' or use a download link")
        else:
            file = await self._live_file(file_id, owner=caller)
        seconds_left = int((file.expires_at - utcnow()).total_seconds())
        link = await self.storage.download_url(
            file.storage_key,
            file.original_name,
            file.content_type,
            expires_in=max(1, min(self.settings.file_download_url_seconds, seconds_left)),
        )
        if link is not None:
            return Redirect(link)
        try:
            chunks = await self.storage.open(file.storage_key)
        except FileNotFoundError as err:
            raise Gone("The file was deleted") from err
        return Content(
            chunks,
            media_type=file.content_type,
            headers={
                "Content-Disposition": content_disposition(file.original_name),
                "Content-Length": str(file.size_bytes),
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "private, no-store",
                "ETag": f'"{file.sha256}"',
            },
        )

    async def shown(self, file_id: uuid.UUID, link_token: str) -> Content:
        """A picture for an `<img src>` (a prototype's PREVIEW.png): for whoever holds its signed link, shown in
        place, streamed by the API whatever the storage (it is small), cached privately until the file expires
        (its bytes never change). Only PNG files are shown; a link for another file, tampered with or expired, is
        refused."""
        if not download_token_allows(self.settings, link_token, file_id):
            raise Unauthorized("The picture link is invalid or has expired")
        file = await self._live_file(file_id, owner=None)
        if file.content_type != PICTURE_CONTENT_TYPE:
            raise NotFound("Picture")
        try:
            chunks = await self.storage.open(file.storage_key)
        except FileNotFoundError as err:
            raise Gone("The picture was deleted") from err
        seconds_left = max(0, int((file.expires_at - utcnow()).total_seconds()))
        return Content(
            chunks,
            media_type=file.content_type,
            headers={
                "Content-Disposition": content_disposition(file.original_name, "inline"),
                "Content-Length": str(file.size_bytes),
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": f"private, max-age={seconds_left}, immutable",
                "ETag": f'"{file.sha256}"',
            },
        )

    async def delete(self, file_id: uuid.UUID, owner: Account) -> FileDeletion:
        """Tell the file's retention workflow to delete now, and wait up to DELETE_WAIT for it to finish.
        `deleted` is false when it is still under way (the signal was delivered, so it will finish)."""
        file = await self._live_file(file_id, owner=owner)
        handle = self.temporal.get_workflow_handle_for(FileRetentionWorkflow.run, workflow_id(file.id))
        with reaching_temporal("The file could not be deleted right now; please try again"):
            await handle.signal(FileRetentionWorkflow.delete_now, rpc_timeout=rpc_timeout(self.settings))
        try:
            await asyncio.wait_for(handle.result(), DELETE_WAIT.total_seconds())
        except (TimeoutError, RPCError):
            return FileDeletion(file_id=file.id, deleted=False)
        return FileDeletion(file_id=file.id, deleted=True)

    async def _live_file(self, file_id: uuid.UUID, *, owner: Account | None) -> File:
        """The file if it belongs to `owner` (None: a download link, anyone's) and is still kept. Missing and
        someone else's are the same 404; deleted or expired is 410."""
        async with self.database.session() as db:
            file = await db.get(File, file_id)
        if file is None or (owner is not None and file.user_id != owner.id):
            raise NotFound("File")
        if file.deleted_at is not None:
            raise Gone("The file was deleted")
        if file.expires_at <= utcnow():
            raise Gone("The file expired and is being deleted")
        return file

    @asynccontextmanager
    async def keep(self, received: ReceivedFile, owner: Account) -> AsyncIterator[File]:
        """Store `received` for `owner` under its retention timer and yield the File. If the block raises,
        the timer deletes the object at once (the row stays, marked deleted by the workflow)."""
        file = File(
            user_id=owner.id,
            storage_key="",
            original_name=received.filename,
            content_type=received.content_type,
            size_bytes=received.size,
            sha256=received.sha256,
            expires_at=utcnow() + timedelta(hours=self.settings.file_retention_hours),
        )
        file.storage_key = storage_key(file.id, eu=kept_in_eu(self.settings, owner))
        async with staged(self.database, file):
            handle = await start_workflow(
                self.temporal,
                self.settings,
                FileRetentionWorkflow.run,
                RetainedFile(
                    file_id=file.id, user_id=file.user_id, storage_key=file.storage_key, expires_at=file.expires_at
                ),
                id=workflow_id(file.id),
                policy=START_POLICY,
                search_attributes=search_attributes.for_resource(file.id, file.user_id),
                summary=f"Delete file at {file.expires_at:%Y-%m-%d %H:%M} UTC",  # its name may be personal
            )
        try:
            await self.storage.put_file(file.storage_key, received.path, file.content_type)
            metrics.upload_bytes.inc(file.size_bytes)
            yield file
        except BaseException:
            with suppress(Exception):
                await handle.signal(FileRetentionWorkflow.delete_now, rpc_timeout=rpc_timeout(self.settings))
            raise


def _info(settings: Settings, file: Mapping[str, Any]) -> FileInfo:
    return FileInfo(
        file_id=file["id"],
        url=download_path(file["id"]),
        download_link=browser_link(settings, file["id"]),
        size=file["size_bytes"],
        expires_at=file["expires_at"],
        name=file["original_name"],
        content_type=file["content_type"],
        sha256=file["sha256"],
        created_at=file["created_at"],
    )
