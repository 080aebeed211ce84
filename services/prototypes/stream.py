"""The progress stream's service side: who an events URL lets in, and a stream's events as the prototype's shared
watcher (services.prototypes.watchers) learns them, shown as the API sends them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

from models.api.prototypes import PrototypeEventView
from services.accounts import Account, AccountService
from services.errors import Unauthorized
from services.prototypes.records import PrototypeRecords
from services.prototypes.views import event_view
from services.prototypes.watchers import EventWatchers
from services.security import InvalidToken, events_token_claims


class PrototypeStream(PrototypeRecords):
    """The progress stream: opened for its owner, in the session its URL was signed for."""

    async def events_caller(self, token: str, prototype_id: uuid.UUID) -> Account:
        """Who an `events_url` token lets in: its user, in the session it was issued in, on this prototype's
        stream only. Tampered with, expired, another prototype's, or its session revoked since: 401. Accepted
        nowhere else (no other route reads it, and it passes for no access token or download link)."""
        try:
            claims = events_token_claims(self.settings, token, prototype_id)
        except InvalidToken as err:
            raise Unauthorized("The events URL is invalid or has expired: poll the status for a fresh one") from err
        return await AccountService(self.runtime).signed_in(claims.user_id, claims.session_id)

    async def events(
        self, account: Account, prototype_id: uuid.UUID, watchers: EventWatchers, *, after: int
    ) -> AsyncIterator[PrototypeEventView]:
        """The progress stream: the workflow's events after the one with id `after`, as they happen, ending after
        `completed` or `failed`, after PROTOTYPE_EVENTS_MAX_SECONDS (the client then resumes from its last id), or
        once the caller's session is revoked. A resume from the last id or past it gets the ending event again,
        so that the client knows to stop. Ownership is checked here, before the stream opens (someone else's
        prototype is not found); the stream itself follows the prototype's one watcher in this process
        (services.prototypes.watchers), which asks Temporal for every stream at once, and holds no connection."""
        await self._owned(account, prototype_id)
        session_id = account.session_id or uuid.UUID(int=0)  # none: the check finds it revoked at once
        return self._follow(watchers, prototype_id, session_id, after)

    async def _follow(
        self, watchers: EventWatchers, prototype_id: uuid.UUID, session_id: uuid.UUID, after: int
    ) -> AsyncIterator[PrototypeEventView]:
        closes_at = asyncio.get_running_loop().time() + self.settings.prototype_events_max_seconds
        async with watchers.watching(prototype_id, session_id) as shared:
            async for event in shared.follow(session_id, after, closes_at):
                yield event_view(self.settings, prototype_id, event)
