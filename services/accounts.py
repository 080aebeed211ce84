"""Accounts: log in, rotate refresh tokens (families), log out, and who a token belongs to.

Each operation is one short unit of work. `authenticate` returns a plain `Account`, not a row, so nothing
downstream can hold the session it came from.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.api.auth import TokenPair
from models.enums import ServiceTier
from models.tables import Session, User
from models.types import utcnow
from observability.logs import email_digest
from services.errors import Unauthorized
from services.runtime import Service
from services.security import (
    InvalidToken,
    RefreshToken,
    decode_access_token,
    issue_access_token,
    verify_password,
)

log = logging.getLogger(__name__)


class Account(BaseModel):
    """The signed-in caller, as every service receives it."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: uuid.UUID
    email: str
    name: str | None
    phone: str | None
    language: str
    tier: ServiceTier
    created_at: datetime
    session_id: uuid.UUID | None = None
    """The session the caller signed in with (None for an account just registered): an event stream it opens
    ends with it."""
    email_verified_at: datetime | None = None


_ACCOUNT_COLUMNS = [col(getattr(User, name)) for name in Account.model_fields if name != "session_id"]

LIVE_ACCOUNT = (
    sa.select(*_ACCOUNT_COLUMNS)
    .join(Session, col(Session.user_id) == col(User.id))
    .where(
        col(User.id) == sa.bindparam("user_id"),
        col(Session.id) == sa.bindparam("session_id"),
        col(Session.revoked_at).is_(None),
    )
)
"""The account behind a session that has not been revoked; built once, as every signed-in request runs it."""


BAD_CREDENTIALS = "Invalid email or password"  # wrong password and unknown email alike, on purpose
REUSED = "Invalid refresh token: refresh token already used: the session is revoked"


class AccountService(Service):
    async def login(self, email: str, password: str, *, user_agent: str | None, ip: str | None) -> TokenPair:
        async with self.database.session() as db:
            user = (await db.exec(select(User).where(User.email == email))).first()
        # bcrypt runs with no connection held
        if not await verify_password(password, user.password_hash if user else None, self.settings.bcrypt_rounds):
            who = {"user_id": str(user.id)} if user else {"email_digest": email_digest(email)}  # no address in logs
            log.warning("sign-in refused: %s", "wrong password" if user else "no such account", extra=who)
            raise Unauthorized(BAD_CREDENTIALS)
        assert user is not None
        session = Session(
            user_id=user.id,
            token_hash="",
            user_agent=(user_agent or "")[:512] or None,
            ip=ip,
            expires_at=utcnow() + timedelta(days=self.settings.refresh_token_days),
        )
        refresh = RefreshToken.new(session.id)
        session.token_hash = refresh.digest
        async with self.database.session() as db:
            db.add(session)
            await db.commit()
        return self._token_pair(user.id, refresh)

    async def refresh(self, presented: str) -> TokenPair:
        """Rotate: the presented token must be the family's current one. An older token of the family
        coming back means someone kept a copy, so the family is revoked and both holders are logged out.

        Two refreshes of one token at once: both read the same current hash, one wins the compare-and-swap
        and the other finds the row already rotated. The loser's token is by then an old one of the family,
        so it is reuse like any other: the family is revoked, the winner's new session included, whether the
        loser came before or after the winner's answer. Only ids read before any rollback are used after it
        (a rolled-back ORM row is expired, and reading it would need I/O the async session cannot do)."""
        token = _parse_refresh(presented)
        family = token.session_id
        async with self.database.session() as db:
            session = await db.get(Session, family)
            now = utcnow()
            if session is None or session.revoked_at is not None or session.expires_at <= now:
                raise Unauthorized("Invalid refresh token: refresh token revoked or expired")
            user_id = session.user_id
            if not token.matches(session.token_hash):
                await _revoke(db, family, reason="reuse")
                raise Unauthorized(REUSED)
            rotated = RefreshToken.new(family)
            # Compare-and-swap, so two concurrent refreshes with the same token cannot both succeed. On
            # PostgreSQL the loser's UPDATE waits for the winner's row lock, then finds the hash changed.
            result = await db.exec(  # type: ignore[call-overload]
                sa.update(Session)
                .where(
                    col(Session.id) == family,
                    col(Session.token_hash) == token.digest,
                    col(Session.revoked_at).is_(None),
                )
                .values(token_hash=rotated.digest, generation=Session.generation + 1, last_rotated_at=now)
            )
            if result.rowcount != 1:
                await db.rollback()
                await _revoke(db, family, reason="reuse")
                raise Unauthorized(REUSED)
            await db.commit()
            return self._token_pair(user_id, rotated)

    async def logout(self, presented: str) -> None:
        """Revoke the family the token belongs to, if the token is its current one; anything else is a no-op,
        so logout never tells a caller whether a token was ever valid."""
        token = _parse_refresh(presented)
        async with self.database.session() as db:
            session = await db.get(Session, token.session_id)
            if session is not None and session.revoked_at is None and token.matches(session.token_hash):
                await _revoke(db, session.id, reason="logout")

    async def authenticate(self, access_token: str) -> Account:
        """The account behind an access token, if its session has not been revoked since it was issued."""
        try:
            claims = decode_access_token(self.settings, access_token)
        except InvalidToken as err:
            raise Unauthorized(str(err).capitalize()) from err
        # Every signed-in request comes through here: one autocommit round trip, no ORM objects. Nothing is
        # cached, so a session revoked a moment ago is refused on the very next request.
        return await self.signed_in(claims.user_id, claims.session_id)

    async def signed_in(self, user_id: uuid.UUID, session_id: uuid.UUID) -> Account:
        """The account behind a session that has not been revoked (401 otherwise): an access token's, or the
        one a short-lived signed URL was issued in."""
        rows = await self.database.fetch(LIVE_ACCOUNT, {"user_id": user_id, "session_id": session_id})
        if not rows:
            raise Unauthorized("Session revoked or user no longer exists")
        return Account.model_validate({**rows[0], "session_id": session_id})

    async def live_sessions(self, session_ids: set[uuid.UUID]) -> set[uuid.UUID]:
        """Those of the sessions that have not been revoked (nor deleted with their user)."""
        if not session_ids:
            return set()
        statement = sa.select(col(Session.id)).where(
            col(Session.id).in_(session_ids), col(Session.revoked_at).is_(None)
        )
        async with self.database.read() as connection:
            return set((await connection.scalars(statement)).all())

    def _token_pair(self, user_id: uuid.UUID, refresh_token: RefreshToken) -> TokenPair:
        access, lifetime = issue_access_token(self.settings, user_id, refresh_token.session_id)
        return TokenPair(access_token=access, refresh_token=str(refresh_token), expires_in=lifetime)


def _parse_refresh(presented: str) -> RefreshToken:
    try:
        return RefreshToken.parse(presented)
    except InvalidToken as err:
        raise Unauthorized(f"Invalid refresh token: {err}") from err


async def _revoke(db: AsyncSession, session_id: uuid.UUID, *, reason: str) -> None:
    await db.exec(  # type: ignore[call-overload]
        sa.update(Session)
        .where(col(Session.id) == session_id, col(Session.revoked_at).is_(None))
        .values(revoked_at=utcnow(), revoke_reason=reason)
    )
    await db.commit()
