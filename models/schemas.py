"""Pydantic models: API requests and responses, and the inputs and outputs of workflows and activities.

Everything that crosses Temporal is defined here (plain pydantic, never a `table=True` model), and this
module imports nothing but pydantic and the enums, so workflows can import it inside the sandbox.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints
from pydantic.alias_generators import to_camel

from models.enums import ContactStatus, ServiceTier

BCRYPT_MAX_BYTES = 72


def _fits_bcrypt(password: str) -> str:
    if len(password.encode("utf-8")) > BCRYPT_MAX_BYTES:
        raise ValueError(
            f"password is longer than {BCRYPT_MAX_BYTES} bytes in UTF-8; bcrypt would silently ignore the rest"
        )
    return password


def _lower(email: str) -> str:
    return email.lower()


Email = Annotated[EmailStr, AfterValidator(_lower)]
NewPassword = Annotated[str, Field(min_length=8, examples=["correct horse battery"]), AfterValidator(_fits_bcrypt)]
Password = Annotated[str, Field(min_length=1), AfterValidator(_fits_bcrypt)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Strict(BaseModel):
    """Request bodies refuse fields they do not know, so a typo or a smuggled field is an error."""

    model_config = ConfigDict(extra="forbid")


# --- errors ---------------------------------------------------------------------------------------


class FieldError(BaseModel):
    field: str = Field(examples=["body.email"])
    message: str = Field(examples=["value is not a valid email address"])


class ErrorResponse(BaseModel):
    """The one shape of every failure (the seed's error handler)."""

    success: Literal[False] = False
    error: str
    code: int
    timestamp: datetime
    details: list[FieldError] | None = None


class RateLimitResponse(ErrorResponse):
    message: str = Field(examples=["Rate limit exceeded. Try again in 86400 seconds."])
    retryAfter: int = Field(description="Seconds until the next request is allowed, as in Retry-After")


# --- auth -----------------------------------------------------------------------------------------


class RegisterRequest(Strict):
    email: Email
    password: NewPassword
    name: Name | None = None


class LoginRequest(Strict):
    email: Email
    password: Password


class RefreshRequest(Strict):
    refresh_token: str = Field(min_length=1, max_length=512)


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


# --- contact --------------------------------------------------------------------------------------


class ContactRequest(Strict):
    name: Name
    email: Email
    message: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]
    subject: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9 ()-]{5,32}$")] | None = None


class ContactAccepted(BaseModel):
    success: Literal[True] = True
    contact_id: uuid.UUID
    status: ContactStatus
    workflow_id: str


# --- workflow and activity payloads ---------------------------------------------------------------


class EmailMessage(BaseModel):
    """`message_id` is the idempotency key: the same id is never delivered twice."""

    message_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,200}$")]
    to: list[str] = Field(min_length=1)
    subject: str = Field(max_length=300)
    text: str
    html: str | None = None
    reply_to: str | None = None


class EmailReceipt(BaseModel):
    message_id: str
    backend: str
    provider_message_id: str | None
    sent_at: datetime


class ContactNotice(BaseModel):
    contact_id: uuid.UUID
    team_address: str
    name: str
    email: str
    message: str
    subject: str | None = None
    phone: str | None = None


class ContactProgress(BaseModel):
    contact_id: uuid.UUID | None
    team_notified: bool
    sender_confirmed: bool


class HealthStatus(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


# --- files ----------------------------------------------------------------------------------------


class CamelModel(BaseModel):
    """The seed's file API speaks camelCase (`fileId`, `expiresAt`)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class UploadedFile(CamelModel):
    file_id: uuid.UUID
    url: str = Field(description="Where the owner downloads it: GET, with the access token")
    size: int
    expires_at: datetime


class FileInfo(UploadedFile):
    name: str
    content_type: str
    sha256: str
    created_at: datetime


class FileDeletion(CamelModel):
    file_id: uuid.UUID
    deleted: bool = Field(description="True once the object is gone; false if deletion is still under way")


class RetainedFile(BaseModel):
    """What FileRetentionWorkflow needs: the key to delete and when."""

    file_id: uuid.UUID
    user_id: uuid.UUID
    storage_key: str
    expires_at: datetime


class RetentionStatus(BaseModel):
    file_id: uuid.UUID | None
    deletes_at: datetime | None
    deleted_at: datetime | None
    deleted_early: bool
