"""The URLs a prototype's answers carry: its status, its revisions' status, its progress stream, its zip."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from models.tables import Prototype
from services.files import browser_link, download_path
from services.security import sign_events_token
from settings import Settings


def status_url(prototype_id: uuid.UUID) -> str:
    """Outside /api/ai/ on purpose: polling costs nothing of the AI limit."""
    return f"/api/prototypes/{prototype_id}"


def revision_status_url(prototype_id: uuid.UUID, number: int) -> str:
    return f"{status_url(prototype_id)}/revisions/{number}"


def approval_url(prototype_id: uuid.UUID) -> str:
    return f"{status_url(prototype_id)}/approval"


def events_url(settings: Settings, prototype: Prototype, session_id: uuid.UUID | None) -> str:
    """The progress stream's URL as EventSource opens it: signed for this prototype's stream, its owner and the
    session asking, for PROTOTYPE_EVENTS_TOKEN_SECONDS (an HMAC: microseconds, so every status answer gets a
    fresh one). Without a session (none asked) it is signed for the nil session, which opens nothing."""
    expires_at = int(time.time()) + settings.prototype_events_token_seconds
    session = session_id or uuid.UUID(int=0)
    token = sign_events_token(settings, prototype.user_id, session, prototype.id, expires_at)
    return f"{status_url(prototype.id)}/events?token={token}"


@dataclass(frozen=True)
class ZipLinks:
    """A finished zip's two links: with the access token, and signed for an <a href>; and its picture's, signed
    for an <img src>."""

    download_url: str | None = None
    download_link: str | None = None
    preview_link: str | None = None


def zip_links(settings: Settings, zip_id: uuid.UUID | None, preview_id: uuid.UUID | None = None) -> ZipLinks:
    """The zip's links, and its picture's; none without a zip."""
    if zip_id is None:
        return ZipLinks()
    return ZipLinks(
        download_url=download_path(zip_id),
        download_link=browser_link(settings, zip_id),
        preview_link=browser_link(settings, preview_id, shown=True) if preview_id is not None else None,
    )
