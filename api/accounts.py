"""Users and their sessions (refresh-token families): register, log in, rotate, revoke."""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from api.security import (
    InvalidToken,
    RefreshToken,
    hash_password,
    issue_access_token,
    verify_password,
)
from models.api.auth import RegisterRequest, TokenPair
from models.tables import Session, User
from models.types import utcnow
from settings import Settings


class EmailTaken(Exception):
    pass


class BadCredentials(Exception):
    """Wrong password and unknown email are the same failure, on purpose."""


async def register(db: AsyncSession, settings: Settings, body: RegisterRequest) -> User:
    user = User(
        email=body.email,
        name=body.name,
        password_hash=await hash_password(body.password, settings.bcrypt_rounds),
    )
    db.add(user)
    try:
        await db.commit()
    except IntegrityError as err:
        await db.rollback()
        raise EmailTaken(body.email) from err
    return user


async def login(
    db: AsyncSession, settings: Settings, email: str, password: str, *, user_agent: str | None, ip: str | None
) -> TokenPair:
    user = (await db.exec(select(User).where(User.email == email))).first()
    if not await verify_password(password, user.password_hash if user else None, settings.bcrypt_rounds):
        raise BadCredentials
    assert user is not None
    session = Session(
        user_id=user.id,
        token_hash="",
        user_agent=(user_agent or "")[:512] or None,
        ip=ip,
        expires_at=utcnow() + timedelta(days=settings.refresh_token_days),
    )
    refresh = RefreshToken.new(session.id)
    session.token_hash = refresh.digest
    db.add(session)
    await db.commit()
    return _token_pair(settings, user.id, refresh)


async def refresh(db: AsyncSession, settings: Settings, presented: str) -> TokenPair:
    """Rotate: the presented token must be the family's current one. An older token of the family
    coming back means someone kept a copy, so the family is revoked and both holders are logged out."""
    token = RefreshToken.parse(presented)
    session = await db.get(Session, token.session_id)
    now = utcnow()
    if session is None or session.revoked_at is not None or session.expires_at <= now:
        raise InvalidToken("refresh token revoked or expired")
    if not token.matches(session.token_hash):
        await _revoke(db, session.id, reason="reuse")
        raise InvalidToken("refresh token already used: the session is revoked")
    rotated = RefreshToken.new(session.id)
    # Compare-and-swap, so two concurrent refreshes with the same token cannot both succeed.
    result = await db.exec(  # type: ignore[call-overload]
        sa.update(Session)
        .where(
            col(Session.id) == session.id,
            col(Session.token_hash) == token.digest,
            col(Session.revoked_at).is_(None),
        )
        .values(token_hash=rotated.digest, generation=Session.generation + 1, last_rotated_at=now)
    )
    if result.rowcount != 1:
        await db.rollback()
        await _revoke(db, session.id, reason="reuse")
        raise InvalidToken("refresh token already used: the session is revoked")
    await db.commit()
    return _token_pair(settings, session.user_id, rotated)


async def logout(db: AsyncSession, presented: str) -> None:
    """Revoke the family the token belongs to, if the token is its current one; anything else is a no-op,
    so logout never tells a caller whether a token was ever valid."""
    token = RefreshToken.parse(presented)
    session = await db.get(Session, token.session_id)
    if session is not None and session.revoked_at is None and token.matches(session.token_hash):
        await _revoke(db, session.id, reason="logout")


async def active_user(db: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID) -> User | None:
    """The user behind an access token, if its session has not been revoked since it was issued."""
    statement = (
        select(User)
        .join(Session, col(Session.user_id) == col(User.id))
        .where(
            col(User.id) == user_id,
            col(Session.id) == session_id,
            col(Session.revoked_at).is_(None),
        )
    )
    return (await db.exec(statement)).first()


async def _revoke(db: AsyncSession, session_id: uuid.UUID, *, reason: str) -> None:
    await db.exec(  # type: ignore[call-overload]
        sa.update(Session)
        .where(col(Session.id) == session_id, col(Session.revoked_at).is_(None))
        .values(revoked_at=utcnow(), revoke_reason=reason)
    )
    await db.commit()


def _token_pair(settings: Settings, user_id: uuid.UUID, refresh_token: RefreshToken) -> TokenPair:
    access, lifetime = issue_access_token(settings, user_id, refresh_token.session_id)
    return TokenPair(access_token=access, refresh_token=str(refresh_token), expires_in=lifetime)
