"""The one error envelope (`success: false, error, code, timestamp`) and the handlers that produce it."""

from __future__ import annotations

import email.message
import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import psycopg
import psycopg_pool
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.api.common import ErrorResponse, FieldError, RateLimitResponse
from models.types import utcnow
from observability.sentry import report
from services.errors import DomainError, TooManyRequests
from services.waiting import CallerGone

log = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499


def error_body(code: int, error: str, details: list[FieldError] | None = None, **extra: Any) -> dict[str, Any]:
    body = ErrorResponse(error=error, code=code, timestamp=utcnow(), details=details).model_dump(
        mode="json", exclude_none=True
    )
    return {**body, **extra}


def error_response(code: int, error: str, *, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(code, error, **extra), status_code=code, headers=headers)


def _field_name(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location) or "request"


def _validation_message(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "is invalid"))
    return message.removeprefix("Value error, ")


JSON_MEDIA_TYPES = "application/json (or an application/*+json type)"


def _is_json(content_type: str) -> bool:
    """As FastAPI decides whether to parse a body as JSON: application/json, or application/<anything>+json."""
    header = email.message.Message()
    header["content-type"] = content_type
    subtype = header.get_content_subtype()
    return header.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def _unsupported_media_type(request: Request, errors: Sequence[Any]) -> str | None:
    """Why a JSON body was not read as JSON, if that is what failed: a body sent with another Content-Type (or none)
    reaches validation as raw bytes, and fails as a whole ("Input should be a valid dictionary"). None otherwise."""
    content_type = request.headers.get("content-type", "")
    if content_type and _is_json(content_type):
        return None
    if not any(tuple(e["loc"]) == ("body",) and e["type"] != "missing" for e in errors):
        return None
    sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
    return f"Unsupported Media Type: send the body as JSON, Content-Type {JSON_MEDIA_TYPES}; this request has {sent}"


def _json_error(error: dict[str, Any], document: Any) -> FieldError:
    """Malformed JSON, by line and column (FastAPI names the field after the character offset: `body.27`)."""
    offset = error["loc"][-1] if isinstance(error["loc"][-1], int) else 0
    text = document.decode("utf-8", "replace") if isinstance(document, bytes) else str(document or "")
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    reason = str(error.get("ctx", {}).get("error") or "cannot be decoded")
    return FieldError(field="body", message=f"Invalid JSON at line {line}, column {column}: {reason}")


_DESCRIPTIONS = {
    400: "The request cannot be processed as sent",
    401: "Missing, invalid or expired access token",
    403: "Signed in, but not allowed to do this",
    404: "No such resource, or it belongs to someone else",
    408: "The client stopped sending the body (an upload idle for UPLOAD_IDLE_SECONDS); nothing was kept",
    409: "Conflicts with the resource's current state, or an Idempotency-Key still in progress",
    410: "The resource existed but is gone (for example a file past its 24 hours)",
    413: "The body is larger than allowed",
    415: "The content type is not accepted",
    422: "The request is invalid; `details` names each field",
    429: "Daily limit reached; see Retry-After",
    502: "An outside provider (payment gateway, AI) refused or failed",
    503: "A service this needs is unavailable; nothing was done, try again",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route can answer, each with the error envelope."""
    return {
        code: {"model": RateLimitResponse if code == 429 else ErrorResponse, "description": _DESCRIPTIONS[code]}
        for code in codes
    }


def _connection_lost(request: Request) -> JSONResponse:
    log.warning("database connection lost on %s %s", request.method, request.url.path)
    return error_response(503, "The database connection was lost; please retry", headers={"Retry-After": "1"})


def install_error_handlers(app: FastAPI, *, hide_internal_errors: bool) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        if isinstance(exc, TooManyRequests):  # a 429 has the rate-limit shape, whatever its cause
            return error_response(
                exc.status, exc.message, headers=exc.headers, message=exc.detail, retryAfter=exc.retry_after
            )
        return error_response(exc.status, exc.message, headers=exc.headers)

    @app.exception_handler(CallerGone)
    async def _caller_gone(_: Request, __: CallerGone) -> Response:
        """The client left while its answer was awaited: nobody reads this. 499 is nginx's "client closed
        request", so the request log and the metrics tell these apart from answered requests."""
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if (unsupported := _unsupported_media_type(request, exc.errors())) is not None:
            return error_response(415, unsupported)
        decoding = [_json_error(e, exc.body) for e in exc.errors() if e["type"] == "json_invalid"]
        # dict.fromkeys: a body read by the route and by one of its dependencies is validated, and reported, twice
        found = dict.fromkeys((_field_name(e["loc"]), _validation_message(e)) for e in exc.errors())
        details = decoding or [FieldError(field=field, message=message) for field, message in found]
        summary = "; ".join(f"{d.field}: {d.message}" for d in details[:5])
        return error_response(422, f"Invalid request: {summary}", details=details)

    @app.exception_handler(sqlalchemy.exc.TimeoutError)
    @app.exception_handler(psycopg_pool.PoolTimeout)  # the hot pool's (models/db.py); more specific than the next
    async def _pool_exhausted(request: Request, _: Exception) -> JSONResponse:
        """Every pooled connection is busy: say so at once rather than fail with a 500 after a long wait."""
        log.warning("database pool exhausted on %s %s", request.method, request.url.path)
        return error_response(503, "The service is busy; please retry in a moment", headers={"Retry-After": "1"})

    @app.exception_handler(sqlalchemy.exc.DBAPIError)
    async def _database_error(request: Request, exc: sqlalchemy.exc.DBAPIError) -> JSONResponse:
        """A pooled connection the server had closed (a restart, an idle timeout): there is no pre-ping, so
        this request finds out; SQLAlchemy has already invalidated the pool and the retry gets a new one."""
        if not exc.connection_invalidated:
            return await _unexpected(request, exc)
        return _connection_lost(request)

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(psycopg.InterfaceError)
    async def _driver_connection_error(request: Request, _: Exception) -> JSONResponse:
        """The same on the hot pool's connections (psycopg's errors): the pool closes that connection."""
        return _connection_lost(request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        report(exc)  # first, so Sentry's logging integration sees a duplicate and drops it
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        message = "Internal Server Error" if hide_internal_errors else f"{type(exc).__name__}: {exc}"
        return error_response(500, message)
