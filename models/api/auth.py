"""Requests and responses of /auth."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from models.api.common import Email, Name, NoControls, Strict
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
    email: Email
    password: NewPassword
    name: Name | None = None


class LoginRequest(Strict):
    email: Email
    password: Password


class RefreshRequest(Strict):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=512), NoControls]


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Lifetime of the access token in seconds")


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str | None
    phone: str | None
    language: str
    tier: ServiceTier
    created_at: datetime
