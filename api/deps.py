"""Annotated dependencies for endpoints: the domain services, the caller, the Idempotency-Key header.

No dependency hands a route a database session: services open short units of work themselves, so a
request that waits on the network (an upload body, Temporal, a long poll) holds no connection.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.accounts import Account, AccountService
from services.addresses import AddressService
from services.chat import ChatService
from services.contact import ContactService
from services.errors import Unauthorized
from services.files import FileService
from services.payments import PaymentService
from services.privacy import PrivacyService
from services.prototypes import PrototypeService
from services.runtime import Service
from settings import Settings

_bearer = HTTPBearer(auto_error=False, description="The access_token from POST /auth/login")

AnyService = TypeVar("AnyService", bound=Service)


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]


def service(kind: type[AnyService]) -> Callable[[Request], Coroutine[Any, Any, AnyService]]:
    """A dependency that hands the route the domain's service (a light object over the shared runtime). It
    reads the runtime itself rather than through a dependency of its own: one fewer for FastAPI to solve on
    every request that uses a service."""

    async def provide(request: Request) -> AnyService:
        return kind(request.app.state.runtime)

    return provide


Accounts = Annotated[AccountService, Depends(service(AccountService))]
Addresses = Annotated[AddressService, Depends(service(AddressService))]
Contacts = Annotated[ContactService, Depends(service(ContactService))]
Files = Annotated[FileService, Depends(service(FileService))]
Chats = Annotated[ChatService, Depends(service(ChatService))]
Prototypes = Annotated[PrototypeService, Depends(service(PrototypeService))]
Payments = Annotated[PaymentService, Depends(service(PaymentService))]
Privacy = Annotated[PrivacyService, Depends(service(PrivacyService))]


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def get_optional_user(request: Request, credentials: Bearer) -> Account | None:
    """The caller, if a bearer token came; a bad or revoked token is a 401 even where sign-in is optional.
    The accounts service is built here rather than asked for as a dependency: every signed-in request comes
    through, and each dependency FastAPI solves costs it a few tens of microseconds."""
    if credentials is None:
        return None
    account = await AccountService(request.app.state.runtime).authenticate(credentials.credentials)
    request.state.user_id = account.id  # a live session: the limiter keys on it where sign-in is required
    return account


OptionalUser = Annotated[Account | None, Depends(get_optional_user)]


async def get_current_user(request: Request, credentials: Bearer) -> Account:
    """The caller; no token is a 401. It calls get_optional_user rather than depending on it: one dependency
    fewer to solve."""
    user = await get_optional_user(request, credentials)
    if user is None:
        raise Unauthorized("Not authenticated: send 'Authorization: Bearer <access_token>'")
    return user


CurrentUser = Annotated[Account, Depends(get_current_user)]


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Send the same key when retrying: the retry gets the first request's result",
    ),
]
