"""Domain errors carry their HTTP status; api/errors.py renders every one of them as the error envelope.

Services raise these instead of HTTPException, so the rules read the same whether a route, a test or a
CLI calls them, and one handler decides what the client sees.
"""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    status: ClassVar[int] = 400

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class BadRequest(DomainError):
    status = 400


class Unauthorized(DomainError):
    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    """Missing and someone else's are the same answer, so ids cannot be probed."""

    status = 404

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")


class RequestTimeout(DomainError):
    """The client stopped sending its request body."""

    status = 408


class Conflict(DomainError):
    status = 409


class Gone(DomainError):
    status = 410


class PayloadTooLarge(DomainError):
    status = 413


class UnsupportedMediaType(DomainError):
    status = 415


class Unprocessable(DomainError):
    status = 422


class TooManyRequests(DomainError):
    """The one 429: a daily rate limit spent (api/ratelimit.py), or too many requests of one kind in flight at
    once. Either way one may retry after `retry_after` seconds, which the answer's Retry-After says.

    `message` is the body's `message`; `error`, the body's `error`, is the same text unless given (the daily
    limits answer the status phrase there, as they always have)."""

    status = 429

    def __init__(self, message: str, *, retry_after: int = 1, error: str | None = None) -> None:
        super().__init__(error or message, headers={"Retry-After": str(retry_after)})
        self.detail = message
        self.retry_after = retry_after


class BadGateway(DomainError):
    """An outside system (payment gateway, AI provider) refused or failed."""

    status = 502


class Unavailable(DomainError):
    """Something this service needs (Temporal, the database, a gateway) cannot be reached right now."""

    status = 503


class IdempotencyKeyInUse(Conflict):
    def __init__(self) -> None:
        super().__init__("A request with this Idempotency-Key is already in progress; retry it shortly")
