"""Requests and responses of /auth."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from models.api.common import Email, Name, NoControls, Strict, examples
from models.enums import ServiceTier

BCRYPT_MAX_BYTES = 72


def _fits_bcrypt(password: str) -> str:
    if len(password.encode("utf-8")) > BCRYPT_MAX_BYTES:
        raise ValueError(
            f"password is longer than {BCRYPT_MAX_BYTES} bytes in UTF-8; bcrypt would silently ignore the rest"
        )
    return password


NewPassword = Annotated[
    str,
    StringConstraints(min_length=8),
    NoControls,
    AfterValidator(_fits_bcrypt),
    Field(examples=["correct horse battery"]),
]


Password = Annotated[str, StringConstraints(min_length=1), NoControls, AfterValidator(_fits_bcrypt)]


class RegisterRequest(Strict):
    model_config = examples({"email": "ada@example.com", "password": "correct horse battery", "name": "Ada Lovelace"})

    email: Email
    password: NewPassword
    name: Name | None = None


class LoginRequest(Strict):
    model_config = examples({"email": "ada@example.com", "password": "correct horse battery"})

    email: Email
    password: Password


class RefreshRequest(Strict):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=512), NoControls]


class TokenPair(BaseModel):
    model_config = examples(
        {
            "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIzZjJiOGMxZSJ9.c2lnbmF0dXJlLWV4YW1wbGU",
            "refresh_token": "rt_0b9c1f6a2d7e4c3b8a5f1e0d9c8b7a6f",
            "token_type": "bearer",
            "expires_in": 900,
        }
    )

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Lifetime of the access token in seconds")


class UserPublic(BaseModel):
    model_config = examples(
        {
            "id": "3f2b8c1e-6a4d-4e8f-9b1a-5c7d2e9f0a14",
            "email": "ada@example.com",
            "name": "Ada Lovelace",
            "phone": None,
            "language": "en",
            "tier": "STANDARD",
            "created_at": "2026-05-04T09:30:00Z",
            "email_verified_at": "2026-05-04T09:32:10Z",
        },
        from_attributes=True,
    )

    id: uuid.UUID
    email: str
    name: str | None
    phone: str | None
    language: str
    tier: ServiceTier
    created_at: datetime
    email_verified_at: datetime | None = Field(
        default=None, description="When the address was verified (its emailed link); null: not yet"
    )


REGISTERED_DETAIL = (
    "Check your inbox: we sent a code to confirm the address. Sign in with POST /auth/login, then send it to "
    "POST /auth/verify."
)


class RegistrationAccepted(BaseModel):
    """The same answer whether or not the address already had an account: only its holder learns which, by email."""

    model_config = examples({"status": "VERIFICATION_SENT", "detail": REGISTERED_DETAIL})

    status: Literal["VERIFICATION_SENT"] = "VERIFICATION_SENT"
    detail: str = REGISTERED_DETAIL


class ForgotPasswordRequest(Strict):
    model_config = examples({"email": "ada@example.com"})

    email: Email


class EmailSent(BaseModel):
    """The same answer whether or not the address has an account."""

    model_config = examples({"detail": "If an account has this address, a reset code is on its way to it."})

    detail: str = "If an account has this address, a reset code is on its way to it."


class ResetPasswordRequest(Strict):
    model_config = examples({"token": "pr1.3f2b8c1e6a4d4e8f9b1a5c7d2e9f0a14.1780000000.c2ln", "password": "a new one!"})

    token: Annotated[str, StringConstraints(min_length=1, max_length=200), NoControls]
    password: NewPassword


class VerifyRequest(Strict):
    model_config = examples({"token": "av1.3f2b8c1e6a4d4e8f9b1a5c7d2e9f0a14.1780000000.c2ln"})

    token: Annotated[str, StringConstraints(min_length=1, max_length=200), NoControls]


class AddressVerified(BaseModel):
    model_config = examples({"email": "ada@example.com", "email_verified": True})

    email: str
    email_verified: Literal[True] = True
