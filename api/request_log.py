"""A request id for every request, and one access line per request (an ASGI middleware).

The id is the client's `X-Request-ID` when it is a sane one (a proxy or the frontend may have made it),
otherwise a new one; either way the response echoes it, every line logged while the request runs carries
it (logs.request_id), and so do the workflows it starts (log_propagation.py)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import logs
from api.metrics import route_template

HEADER = "X-Request-ID"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""Short and printable: anything else (control characters, a megabyte, a forged log line) is replaced."""

access_log = logging.getLogger("statex.access")


def request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            sent = value.decode("latin-1")
            return sent if SANE_REQUEST_ID.fullmatch(sent) else new_request_id()
    return new_request_id()


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestLog:
    """Sets the request id and writes the access line: method, route template (never the raw path, whose
    query may hold a download token), status, duration, and the caller once signed in."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_from(scope)
        state: dict[str, Any] = scope.setdefault("state", {})  # shared with request.state: user_id lands here
        id_token, state_token = logs.request_id.set(rid), logs.request_state.set(state)
        status = 500  # an exception that escapes every handler becomes a 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = route_template(scope)
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            access_log.log(
                logging.WARNING if status >= 500 else logging.INFO,
                "%s %s %d %.1fms",
                scope["method"],
                route,
                status,
                duration_ms,
                extra={"method": scope["method"], "route": route, "status": status, "duration_ms": duration_ms},
            )
            logs.request_state.reset(state_token)
            logs.request_id.reset(id_token)
