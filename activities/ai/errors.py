"""How a provider's failure is reported to Temporal: retryable or not, with a type that says which.

Rate limits, 5xx, timeouts and lost connections get better by themselves, so Temporal retries them (and
then the workflow tries the next provider). A bad request, rejected credentials or a content-policy
refusal would fail the same way every time: those stop at once, non-retryable.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from temporalio.exceptions import ApplicationError

from models.enums import AIProvider

# As the SDKs themselves would retry: timeout, conflict, rate limit, and every server error.
_RETRYABLE_STATUSES = frozenset({408, 409, 429})


class AIFailure(StrEnum):
    RATE_LIMITED = "AIRateLimited"
    PROVIDER_ERROR = "AIProviderError"
    UNREACHABLE = "AIProviderUnreachable"
    BAD_REQUEST = "AIBadRequest"
    AUTH_FAILED = "AIAuthFailed"
    CONTENT_REFUSED = "AIContentRefused"
    REQUEST_REJECTED = "AIRequestRejected"
    NOT_CONFIGURED = "AINotConfigured"
    ALL_PROVIDERS_DOWN = "AIProvidersUnavailable"


def provider_name(provider: AIProvider) -> str:
    return provider.value.lower()


def http_failure(
    provider: AIProvider,
    status: int,
    message: str,
    *,
    code: str | None = None,
    retry_after: timedelta | None = None,
) -> ApplicationError:
    """The ApplicationError for an HTTP error answer from a provider."""
    who = provider_name(provider)
    if code == "content_filter":
        return content_refused(provider, message)
    if status in (401, 403):
        return ApplicationError(
            f"{who} rejected our credentials (HTTP {status}): {message}",
            type=AIFailure.AUTH_FAILED,
            non_retryable=True,
        )
    if status == 429:
        return ApplicationError(
            f"{who} is rate limiting us (HTTP 429): {message}",
            type=AIFailure.RATE_LIMITED,
            next_retry_delay=retry_after,
        )
    if status in _RETRYABLE_STATUSES or status >= 500:
        return ApplicationError(f"{who} failed (HTTP {status}): {message}", type=AIFailure.PROVIDER_ERROR)
    if status == 400:
        return ApplicationError(
            f"{who} refused the request as invalid (HTTP 400): {message}",
            type=AIFailure.BAD_REQUEST,
            non_retryable=True,
        )
    return ApplicationError(
        f"{who} refused the request (HTTP {status}): {message}", type=AIFailure.REQUEST_REJECTED, non_retryable=True
    )


def content_refused(provider: AIProvider, message: str) -> ApplicationError:
    return ApplicationError(
        f"{provider_name(provider)} refused under its content policy: {message}",
        type=AIFailure.CONTENT_REFUSED,
        non_retryable=True,
    )


def unreachable(provider: AIProvider, err: BaseException) -> ApplicationError:
    return ApplicationError(
        f"{provider_name(provider)} did not answer: {type(err).__name__}: {err}", type=AIFailure.UNREACHABLE
    )


def retry_after(header: str | None, ceiling: timedelta) -> timedelta | None:
    """The provider's Retry-After (seconds form), capped so a bad header cannot park a call for hours."""
    try:
        seconds = float(header) if header else None
    except ValueError:
        return None
    if seconds is None or seconds < 0:
        return None
    return min(timedelta(seconds=seconds), ceiling)
