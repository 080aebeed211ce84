"""/api/files: upload (kept 24 hours, then deleted by FileRetentionWorkflow), list, download, delete."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import RedirectResponse, StreamingResponse

from api.deps import CurrentUser, Files, OptionalUser, SettingsDep
from api.errors import errors
from api.ratelimit import Quota, RateLimit, RateLimitedRoute
from api.uploads import MULTIPART_BODY, receive_file, upload_slot
from models.api.files import FileDeletion, FileInfo, UploadedFile
from services.files import Redirect

router = APIRouter(prefix="/api/files", tags=["files"], route_class=RateLimitedRoute)


@router.post(
    "/upload",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=MULTIPART_BODY,
    responses=errors(400, 401, 408, 413, 415, 422, 429, 503),
)
async def upload(
    request: Request,
    user: CurrentUser,
    files: Files,
    settings: SettingsDep,
    quota: Annotated[Quota, RateLimit("upload", counts_itself=True)],
) -> UploadedFile:
    """Multipart, field `file`. The file is deleted after FILE_RETENTION_HOURS (24 by default)."""
    await quota.check()  # an exhausted quota is refused before the body is read
    files.refuse_unkeepable(user)  # so is an EU_COMPLIANCE upload with no EU bucket to keep it in (503)
    with upload_slot(request, user.id):  # so is a third upload while two are in flight
        received = await receive_file(
            request,
            max_bytes=settings.file_max_bytes,
            allowed=settings.file_allowed_types,
            spool_dir=settings.data_dir / "uploads-in-progress",
            idle_seconds=settings.upload_idle_seconds,
        )
        try:
            await quota.spend()  # counted now that the upload is valid
            return await files.upload(received, user)
        finally:
            await asyncio.to_thread(received.path.unlink, missing_ok=True)


@router.get("", name="list", responses=errors(401, 429))  # named here: a function `list` would shadow the builtin
async def list_files(user: CurrentUser, files: Files, _: Annotated[Quota, RateLimit("default")]) -> list[FileInfo]:
    """The caller's files that are still kept, newest first."""
    return await files.list_of(user)


@router.get(
    "/{file_id}",
    response_class=Response,
    responses={
        200: {
            "description": "The content (local storage), with the file's own media type",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        },
        307: {"description": "A presigned link to the content (R2), valid at most until the file expires"},
        **errors(401, 404, 410, 422, 429),
    },
)
async def download(
    file_id: uuid.UUID,
    user: OptionalUser,
    files: Files,
    _: Annotated[Quota, RateLimit("default")],
    token: Annotated[
        str | None, Query(max_length=2048, description="A download link's token (emails carry one): no sign-in")
    ] = None,
) -> Response:
    """For the owner (bearer token), or for whoever holds a download link for this file. No database
    connection is held while the content streams."""
    found = await files.download(file_id, caller=user, link_token=token)
    if isinstance(found, Redirect):
        return RedirectResponse(found.url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    return StreamingResponse(found.chunks, media_type=found.media_type, headers=found.headers)


@router.get(
    "/{file_id}/preview",
    response_class=Response,
    responses={
        200: {
            "description": "The picture, shown in place (a prototype's PREVIEW.png)",
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        },
        **errors(401, 404, 410, 422, 429),
    },
)
async def preview(
    file_id: uuid.UUID,
    files: Files,
    _: Annotated[Quota, RateLimit("default")],
    token: Annotated[str, Query(max_length=2048, description="The picture link's token (`preview_link`)")],
) -> Response:
    """A prototype's picture for an `<img src>`, by its signed link (`preview_link` in the status, the event
    stream and the email): image/png, cached privately until it expires. Any other file is not shown here."""
    shown = await files.shown(file_id, token)
    return StreamingResponse(shown.chunks, media_type=shown.media_type, headers=shown.headers)


@router.delete(
    "/{file_id}",
    responses={
        202: {"model": FileDeletion, "description": "Deletion under way"},
        **errors(401, 404, 410, 422, 429, 503),
    },
)
async def delete(
    file_id: uuid.UUID, user: CurrentUser, files: Files, response: Response, _: Annotated[Quota, RateLimit("default")]
) -> FileDeletion:
    """Signals the file's retention workflow to delete now, and waits a little for it to finish (200);
    if it has not finished by then, 202: the deletion is under way."""
    deletion = await files.delete(file_id, user)
    if not deletion.deleted:
        response.status_code = status.HTTP_202_ACCEPTED
    return deletion
