"""POST /api/contact: the contact form."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, status

from api.deps import Contacts, IdempotencyKey, OptionalUser
from api.errors import errors
from api.ratelimit import Quota, RateLimit, RateLimitedRoute, client_ip
from models.api.contact import ContactAccepted, ContactRequest

router = APIRouter(prefix="/api/contact", tags=["contact"], route_class=RateLimitedRoute)


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses=errors(401, 409, 422, 429, 503))
async def submit(
    body: ContactRequest,
    request: Request,
    user: OptionalUser,
    contacts: Contacts,
    _: Annotated[Quota, RateLimit("default")],
    idempotency_key: IdempotencyKey = None,
) -> ContactAccepted:
    """Emails the team and confirms to the sender. With an `Idempotency-Key`, a retried request gets the
    first one's message and starts no second workflow; the same key with a different message is a 422."""
    return await contacts.submit(
        body,
        user,
        ip=client_ip(request),
        idempotency_key=idempotency_key,
    )
