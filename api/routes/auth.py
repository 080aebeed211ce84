"""/auth: register, login, refresh (rotating), logout (revoking), me."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from api.deps import Accounts, CurrentUser
from api.errors import errors
from api.ratelimit import RateLimitedRoute, client_ip, never_limited
from models.api.auth import LoginRequest, RefreshRequest, RegisterRequest, TokenPair, UserPublic

router = APIRouter(prefix="/auth", tags=["auth"], route_class=RateLimitedRoute)


@router.post("/register", status_code=status.HTTP_201_CREATED, responses=errors(409, 422, 429))
async def register(body: RegisterRequest, accounts: Accounts) -> UserPublic:
    return UserPublic.model_validate(await accounts.register(body))


@router.post("/login", responses=errors(401, 422, 429))
async def login(body: LoginRequest, request: Request, accounts: Accounts) -> TokenPair:
    return await accounts.login(
        body.email, body.password, user_agent=request.headers.get("user-agent"), ip=client_ip(request)
    )


@router.post("/refresh", responses=errors(401, 422, 429))
async def refresh(body: RefreshRequest, accounts: Accounts) -> TokenPair:
    return await accounts.refresh(body.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 422))
@never_limited
async def logout(body: RefreshRequest, accounts: Accounts) -> None:
    await accounts.logout(body.refresh_token)


@router.get("/me", responses=errors(401, 429))
async def me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)
