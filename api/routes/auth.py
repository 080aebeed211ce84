"""/auth: register (and verify the address), login, refresh (rotating), logout (revoking), me, password reset."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Request, status

from api.deps import Accounts, Addresses, CurrentUser
from api.errors import errors
from api.ratelimit import NotLimited, Quota, RateLimit, RateLimitedRoute, client_ip
from models.api.auth import (
    AddressVerified,
    EmailSent,
    ForgotPasswordRequest,
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    RegistrationAccepted,
    ResetPasswordRequest,
    TokenPair,
    UserPublic,
    VerifyRequest,
)

router = APIRouter(prefix="/auth", tags=["auth"], route_class=RateLimitedRoute)


# First: asked on every page load of a signed-in client, and routes are tried in the order they are declared.
@router.get("/me", responses=errors(401, 429))
async def me(user: CurrentUser, _: Annotated[Quota, RateLimit("default")]) -> UserPublic:
    return UserPublic.model_validate(user)


@router.post("/register", status_code=status.HTTP_202_ACCEPTED, responses=errors(422, 429))
async def register(
    body: RegisterRequest, addresses: Addresses, background: BackgroundTasks, _: Annotated[Quota, RateLimit("default")]
) -> RegistrationAccepted:
    """Creates the account (usable at once: sign in with POST /auth/login) and emails a link that verifies the
    address. An address that already has an account gets the same answer, and an email saying so with a reset code.
    Until the address is verified, nothing is linked to the account by it (contact messages sent from it)."""
    return await addresses.register(body, background.add_task)


@router.post("/verify", responses=errors(400, 401, 422, 429))
async def verify(
    body: VerifyRequest, user: CurrentUser, addresses: Addresses, _: Annotated[Quota, RateLimit("default")]
) -> AddressVerified:
    """The code from the verification email, sent signed in to the account it was issued for: it verifies the address
    it was mailed to (for EMAIL_VERIFICATION_HOURS). Both are needed, so whoever reads an inbox cannot verify it for
    an account someone else registered with it, nor can that someone without the inbox."""
    return await addresses.verify(user, body.token)


@router.post(
    "/verify/resend", status_code=status.HTTP_202_ACCEPTED, responses=errors(401, 429, 503)
)  # fmt: skip
async def resend_verification(
    user: CurrentUser, addresses: Addresses, _: Annotated[Quota, RateLimit("default")]
) -> RegistrationAccepted:
    """Another verification email (none if the address is verified; at most one per ACCOUNT_EMAIL_INTERVAL_SECONDS)."""
    return await addresses.resend_verification(user)


@router.post("/password/forgot", status_code=status.HTTP_202_ACCEPTED, responses=errors(422, 429))
async def forgot_password(
    body: ForgotPasswordRequest,
    addresses: Addresses,
    background: BackgroundTasks,
    _: Annotated[Quota, RateLimit("default")],
) -> EmailSent:
    """Emails a single-use reset code (valid PASSWORD_RESET_MINUTES) if the address has an account; the same answer,
    in the same time, if it has none."""
    return await addresses.forgot(body.email, background.add_task)


@router.post("/password/reset", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 422, 429))
async def reset_password(
    body: ResetPasswordRequest, addresses: Addresses, _: Annotated[Quota, RateLimit("default")]
) -> None:
    """Sets the new password with the emailed code (once) and signs the account out everywhere."""
    await addresses.reset(body.token, body.password)


@router.post("/login", responses=errors(401, 422, 429))
async def login(
    body: LoginRequest, request: Request, accounts: Accounts, _: Annotated[Quota, RateLimit("default")]
) -> TokenPair:
    return await accounts.login(
        body.email, body.password, user_agent=request.headers.get("user-agent"), ip=client_ip(request)
    )


@router.post("/refresh", responses=errors(401, 422, 429))
async def refresh(body: RefreshRequest, accounts: Accounts, _: Annotated[Quota, RateLimit("default")]) -> TokenPair:
    return await accounts.refresh(body.refresh_token)


@router.post(
    "/logout", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 422), dependencies=[NotLimited]
)  # never refused: it only takes access away, and a caller who spent the IP's quota must still sign out
async def logout(body: RefreshRequest, accounts: Accounts) -> None:
    await accounts.logout(body.refresh_token)
