"""/api/files: upload (kept 24 hours, then deleted by FileRetentionWorkflow), list, download, delete."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from activities.storage import Storage, content_disposition, download_token_allows, storage_key
from api.deps import CurrentUser, OptionalUser, SessionDep, SettingsDep, StorageDep, TemporalClient
from api.ratelimit import RateLimitedRoute, counts_itself, enforce
from api.uploads import MULTIPART_BODY, ReceivedFile, receive_file
from models.api.files import FileDeletion, FileInfo, UploadedFile
from models.messages.files import RetainedFile
from models.tables import File, User
from models.types import utcnow
from services.files import download_path
from settings import Settings
from workflows import search_attributes
from workflows.retention import FileRetentionWorkflow, workflow_id

router = APIRouter(prefix="/api/files", tags=["files"], route_class=RateLimitedRoute)

_DELETE_WAIT = timedelta(seconds=5)


def _info(file: File) -> FileInfo:
    return FileInfo(
        file_id=file.id,
        url=download_path(file.id),
        size=file.size_bytes,
        expires_at=file.expires_at,
        name=file.original_name,
        content_type=file.content_type,
        sha256=file.sha256,
        created_at=file.created_at,
    )


@router.post(
    "/upload",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadedFile,
    openapi_extra=MULTIPART_BODY,
    responses={413: {"description": "Larger than FILE_MAX_BYTES"}, 415: {"description": "Type not accepted"}},
)
@counts_itself
async def upload_file(
    request: Request,
    user: CurrentUser,
    db: SessionDep,
    temporal: TemporalClient,
    storage: StorageDep,
    settings: SettingsDep,
) -> UploadedFile:
    """Multipart, field `file`. The file is deleted after FILE_RETENTION_HOURS (24 by default)."""
    await enforce(request, count=False)  # an exhausted quota is refused before the body is read
    received = await receive_file(
        request,
        max_bytes=settings.file_max_bytes,
        allowed=settings.file_allowed_types,
        spool_dir=settings.data_dir / "uploads-in-progress",
    )
    try:
        await enforce(request)  # counted now that the upload is valid
        async with kept_file(received, user, db, temporal, storage, settings) as file:
            await db.commit()
    finally:
        await asyncio.to_thread(received.path.unlink, missing_ok=True)
    return UploadedFile(file_id=file.id, url=download_path(file.id), size=file.size_bytes, expires_at=file.expires_at)


@asynccontextmanager
async def kept_file(
    received: ReceivedFile,
    user: User,
    db: AsyncSession,
    temporal: Client,
    storage: Storage,
    settings: Settings,
) -> AsyncIterator[File]:
    """The File row (flushed), its retention timer, then the object: nothing is ever stored without the
    workflow that deletes it. The caller commits inside; if anything fails, the timer deletes at once."""
    file = File(
        user_id=user.id,
        storage_key="",
        original_name=received.filename,
        content_type=received.content_type,
        size_bytes=received.size,
        sha256=received.sha256,
        expires_at=utcnow() + timedelta(hours=settings.file_retention_hours),
    )
    file.storage_key = storage_key(file.id)
    db.add(file)
    await db.flush()
    handle = await _start_retention(temporal, settings, file)
    try:
        await storage.put_file(file.storage_key, received.path, file.content_type)
        yield file
    except BaseException:
        with suppress(Exception):
            await handle.signal(FileRetentionWorkflow.delete_now)
        raise


async def _start_retention(temporal: Client, settings: Settings, file: File) -> WorkflowHandle[Any, Any]:
    return await temporal.start_workflow(
        FileRetentionWorkflow.run,
        RetainedFile(file_id=file.id, user_id=file.user_id, storage_key=file.storage_key, expires_at=file.expires_at),
        id=workflow_id(file.id),
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=search_attributes.for_resource(file.id, file.user_id),
        static_summary=f"Delete {file.original_name[:100]} at {file.expires_at:%Y-%m-%d %H:%M} UTC",
        rpc_timeout=timedelta(seconds=settings.temporal_rpc_timeout_seconds),
    )


@router.get("", response_model=list[FileInfo])
async def list_files(user: CurrentUser, db: SessionDep) -> list[FileInfo]:
    """The caller's files that are still kept, newest first."""
    statement = (
        select(File)
        .where(col(File.user_id) == user.id, col(File.deleted_at).is_(None), col(File.expires_at) > utcnow())
        .order_by(col(File.created_at).desc())
    )
    return [_info(file) for file in (await db.exec(statement)).all()]


async def _live_file(db: SessionDep, file_id: uuid.UUID, *, owner: uuid.UUID | None) -> File:
    """The file, if it is still kept (410 otherwise) and belongs to `owner` (404 otherwise; None: anyone's)."""
    file = await db.get(File, file_id)
    if file is None or (owner is not None and file.user_id != owner):
        raise HTTPException(404, "File not found")
    if file.deleted_at is not None:
        raise HTTPException(410, "The file was deleted")
    if file.expires_at <= utcnow():
        raise HTTPException(410, "The file expired and is being deleted")
    return file


@router.get(
    "/{file_id}",
    response_class=Response,
    responses={
        200: {"description": "The content (local storage)", "content": {"application/octet-stream": {}}},
        307: {"description": "A presigned link to the content (R2), valid at most until the file expires"},
        404: {"description": "No such file of yours"},
        410: {"description": "Deleted or expired"},
    },
)
async def download_file(
    file_id: uuid.UUID,
    user: OptionalUser,
    db: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    token: Annotated[
        str | None, Query(max_length=2048, description="A download link's token (emails carry one): no sign-in")
    ] = None,
) -> Response:
    """For the owner (bearer token), or for whoever holds a download link for this file."""
    if token is not None:
        if not download_token_allows(settings, token, file_id):
            raise HTTPException(401, "The download link is invalid or has expired")
        file = await _live_file(db, file_id, owner=None)
    elif user is None:
        raise HTTPException(
            401, "Not authenticated: send 'Authorization: Bearer <access_token>' or use a download link"
        )
    else:
        file = await _live_file(db, file_id, owner=user.id)
    seconds_left = int((file.expires_at - utcnow()).total_seconds())
    link = await storage.download_url(
        file.storage_key,
        file.original_name,
        file.content_type,
        expires_in=max(1, min(settings.file_download_url_seconds, seconds_left)),
    )
    if link is not None:
        return RedirectResponse(link, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    try:
        chunks = await storage.open(file.storage_key)
    except FileNotFoundError as err:
        raise HTTPException(410, "The file was deleted") from err
    return StreamingResponse(
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


@router.delete(
    "/{file_id}",
    response_model=FileDeletion,
    responses={202: {"model": FileDeletion, "description": "Deletion under way"}},
)
async def delete_file(
    file_id: uuid.UUID, user: CurrentUser, db: SessionDep, temporal: TemporalClient, settings: SettingsDep
) -> Response:
    """Signals the file's retention workflow to delete now, and waits a little for it to finish."""
    file = await _live_file(db, file_id, owner=user.id)
    handle = temporal.get_workflow_handle_for(FileRetentionWorkflow.run, workflow_id(file.id))
    await handle.signal(
        FileRetentionWorkflow.delete_now, rpc_timeout=timedelta(seconds=settings.temporal_rpc_timeout_seconds)
    )
    try:
        await asyncio.wait_for(handle.result(), _DELETE_WAIT.total_seconds())
    except TimeoutError:
        body = FileDeletion(file_id=file.id, deleted=False)
        return Response(body.model_dump_json(by_alias=True), status.HTTP_202_ACCEPTED, media_type="application/json")
    body = FileDeletion(file_id=file.id, deleted=True)
    return Response(body.model_dump_json(by_alias=True), status.HTTP_200_OK, media_type="application/json")
