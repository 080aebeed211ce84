"""/auth: register, login, refresh (rotating), logout (revoking), me."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status

from api import accounts
from api.deps import CurrentUser, SessionDep, SettingsDep
from api.ratelimit import RateLimitedRoute, client_ip
from api.security import InvalidToken
from models.api.auth import LoginRequest, RefreshRequest, RegisterRequest, TokenPair, UserPublic

router = APIRouter(prefix="/auth", tags=["auth"], route_class=RateLimitedRoute)

_BAD_CREDENTIALS = "Invalid email or password"


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserPublic)
async def register(body: RegisterRequest, db: SessionDep, settings: SettingsDep) -> UserPublic:
    try:
        user = await accounts.register(db, settings, body)
    except accounts.EmailTaken as err:
        raise HTTPException(409, "An account with this email already exists") from err
    return UserPublic.model_validate(user)


@router.post("/login", response_model=TokenPair)
async def login(body: LoginRequest, request: Request, db: SessionDep, settings: SettingsDep) -> TokenPair:
    try:
        return await accounts.login(
            db,
            settings,
            body.email,
            body.password,
            user_agent=request.headers.get("user-agent"),
            ip=client_ip(request),
        )
    except accounts.BadCredentials as err:
        raise HTTPException(401, _BAD_CREDENTIALS, headers={"WWW-Authenticate": "Bearer"}) from err


@router.post("/refresh", response_model=TokenPair)
async def refresh(body: RefreshRequest, db: SessionDep, settings: SettingsDep) -> TokenPair:
    try:
        return await accounts.refresh(db, settings, body.refresh_token)
    except InvalidToken as err:
        raise HTTPException(401, f"Invalid refresh token: {err}") from err


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshRequest, db: SessionDep) -> None:
    try:
        await accounts.logout(db, body.refresh_token)
    except InvalidToken as err:
        raise HTTPException(401, f"Invalid refresh token: {err}") from err


@router.get("/me", response_model=UserPublic)
async def me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)
