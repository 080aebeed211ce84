"""Shapes every API route shares: the error envelope, strict request bodies, common field types."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints
from pydantic.alias_generators import to_camel


def lowercase(email: str) -> str:
    return email.lower()


Email = Annotated[EmailStr, AfterValidator(lowercase)]


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Strict(BaseModel):
    """Request bodies refuse fields they do not know, so a typo or a smuggled field is an error."""

    model_config = ConfigDict(extra="forbid")


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


class HealthStatus(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


class ReadyStatus(HealthStatus):
    """Each check's outcome ("ok" or "failed: ...") and how long it took."""

    latency_ms: dict[str, float] = Field(default_factory=dict)


class CamelModel(BaseModel):
    """The seed's file API speaks camelCase (`fileId`, `expiresAt`)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


AIProviderName = Literal["ollama", "openai", "azure"]


def plain_text(text: str) -> str:
    """Words, not control bytes: PostgreSQL cannot store NUL, and no idea needs a bell or an escape."""
    if any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in text):
        raise ValueError("must not contain control characters such as NUL")
    if not text.strip():
        raise ValueError("must contain more than whitespace")
    return text
