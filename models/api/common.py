"""Shapes every API route shares: the error envelope, strict request bodies, common field types."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, EmailStr, Field, StringConstraints
from pydantic.alias_generators import to_camel

# Characters that end or bend a line, or hide: C0/C1 controls (NUL, CR, LF, ESC...), format characters
# (bidi overrides, zero-width), and the Unicode line and paragraph separators.
_NOT_ON_ONE_LINE = frozenset({"Cc", "Cf", "Zl", "Zp"})


def no_control_characters(value: object) -> object:
    """Text, not control bytes: PostgreSQL cannot store NUL, and no text field needs a bell or an escape.
    Tab, CR and LF stay allowed (a message has lines). Checked before stripping, so none is silently cut."""
    if isinstance(value, str) and any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in value):
        raise ValueError("must not contain control characters such as NUL")
    return value


def one_line(value: object) -> object:
    """For anything that may reach an email header (a name, an address, a subject): a CR, LF or U+2028 there
    would split the header or break building the message, so no line or format character is accepted."""
    if isinstance(value, str) and any(unicodedata.category(c) in _NOT_ON_ONE_LINE for c in value):
        raise ValueError("must be one line without control characters (no CR, LF, U+2028, NUL...)")
    return value


def plain_text(text: str) -> str:
    """Words: no control characters, and more than whitespace."""
    no_control_characters(text)
    if not text.strip():
        raise ValueError("must contain more than whitespace")
    return text


def lowercase(email: str) -> str:
    return email.lower()


# Field types put their checks LAST in the Annotated metadata: the outermost BeforeValidator then sees the raw
# text first (nothing is stripped before it is checked), and the string constraints stay string constraints.
NoControls = BeforeValidator(no_control_characters)
"""Every free-text request field: multi-line allowed, NUL and other control characters refused."""

OnOneLine = BeforeValidator(one_line)
"""Every request field that may reach an email header."""

Email = Annotated[EmailStr, BeforeValidator(one_line), AfterValidator(lowercase)]


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), OnOneLine]


def examples(*values: dict[str, Any], from_attributes: bool = False) -> ConfigDict:
    """A model's `model_config` with examples of it, as /docs shows them (each must validate:
    tests/api/test_openapi.py). Merged with the parent's: a CamelModel keeps its aliases."""
    config = ConfigDict(json_schema_extra={"examples": list(values)})
    if from_attributes:
        config["from_attributes"] = True
    return config


class Strict(BaseModel):
    """Request bodies refuse fields they do not know, so a typo or a smuggled field is an error. Their booleans
    are `StrictBool`: `true` or `false`, never `"yes"`, `"off"` or `1` (tests/api/test_hostile_input.py checks every
    request model)."""

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
