"""/api/me: a copy of everything held about the caller (export), and the erasure of their account."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, status

from api.deps import CurrentUser, Privacy
from api.errors import errors
from api.ratelimit import Quota, RateLimit, RateLimitedRoute
from models.api.privacy import ErasureAccepted, ErasureRequest, ExportAccepted, ExportView

router = APIRouter(prefix="/api/me", tags=["me"], route_class=RateLimitedRoute)


@router.post("/export", status_code=status.HTTP_202_ACCEPTED, responses=errors(401, 429, 503))
async def export(user: CurrentUser, privacy: Privacy, _: Annotated[Quota, RateLimit("default")]) -> ExportAccepted:
    """Zips every row and live file held about you; the link is emailed, and the status says when it is ready."""
    return await privacy.export(user)


@router.get("/exports/{export_id}", responses=errors(401, 404, 422, 429, 503))
async def export_status(
    export_id: uuid.UUID, user: CurrentUser, privacy: Privacy, _: Annotated[Quota, RateLimit("default")]
) -> ExportView:
    return await privacy.export_status(user, export_id)


@router.delete("", status_code=status.HTTP_202_ACCEPTED, responses=errors(401, 422, 429, 503))
async def erase(
    body: ErasureRequest, user: CurrentUser, privacy: Privacy, _: Annotated[Quota, RateLimit("default")]
) -> ErasureAccepted:
    """Erases the account (your password again): sessions, work, files, rows, mail, workflow histories.
    Payment records are kept, no longer linked to you, for the accounting period. One confirmation is emailed."""
    return await privacy.erase(user, body.password)
