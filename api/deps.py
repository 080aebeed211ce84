"""Annotated dependencies for endpoints: settings, database session, Temporal client, current user."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from activities.storage import Storage
from api import accounts
from api.security import InvalidToken, decode_access_token
from models.tables import User
from settings import Settings

_bearer = HTTPBearer(auto_error=False, description="The access_token from POST /auth/login")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


def get_temporal(request: Request) -> Client:
    return request.app.state.temporal


def get_storage(request: Request) -> Storage:
    return request.app.state.storage


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_db)]
TemporalClient = Annotated[Client, Depends(get_temporal)]
StorageDep = Annotated[Storage, Depends(get_storage)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


async def get_optional_user(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User | None:
    """The caller, if a bearer token came; a bad or revoked token is a 401 even where sign-in is optional."""
    if credentials is None:
        return None
    try:
        claims = decode_access_token(settings, credentials.credentials)
    except InvalidToken as err:
        raise _unauthorized(str(err).capitalize()) from err
    user = await accounts.active_user(db, claims.user_id, claims.session_id)
    if user is None:
        raise _unauthorized("Session revoked or user no longer exists")
    request.state.user_id = user.id  # the rate limiter keys on it
    return user


OptionalUser = Annotated[User | None, Depends(get_optional_user)]


async def get_current_user(user: OptionalUser) -> User:
    if user is None:
        raise _unauthorized("Not authenticated: send 'Authorization: Bearer <access_token>'")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Send the same key when retrying: the retry gets the first request's result",
    ),
]
_IDEMPOTENCY_NAMESPACE = uuid.UUID("0b6f4f52-8f0e-4c1e-9a55-5a7e3e1f0c11")


def resource_id(kind: str, caller: str, idempotency_key: str | None) -> uuid.UUID:
    """A fresh id, or, with an idempotency key, the same id for the same caller and key every time."""
    if idempotency_key is None:
        return uuid.uuid4()
    return uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{kind}\n{caller}\n{idempotency_key}")


async def stage(db: AsyncSession, row: SQLModel) -> None:
    """Write the row but do not commit: the caller commits once the row's workflow has started, so there is
    never a row without its workflow. A concurrent request with the same idempotency key loses with a 409."""
    db.add(row)
    try:
        await db.flush()
    except IntegrityError as err:
        raise HTTPException(
            409, "A request with this Idempotency-Key is already in progress; retry it shortly"
        ) from err
