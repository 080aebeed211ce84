"""The API's outermost middleware: what every answer gets, in one pure-ASGI layer.

- A request id: the client's `X-Request-ID` when it is a sane one (a proxy or the frontend may have made it),
  otherwise a new one; the response echoes it, every line logged while the request runs carries it
  (logs.request_id), and so do the workflows it starts (observability/request_ids.py).
- Headers that make every answer safe to handle in a browser or a shared cache; a header the route set
  itself is kept (a route that may be cached says so with its own Cache-Control).
- The request metrics: counted by method, route template and status, timed by route template, read after
  routing from the route FastAPI put in the scope, so no id ever becomes a label.
- One access line (ACCESS_LOG_ENABLED): method, route template (never the raw path, whose query may hold a
  download token), status, duration, the caller once signed in, and the workflow the request started.

These were three middlewares, each wrapping `send` and parsing the headers again; on a served process their
layers cost more than a cached route's own work (bench/compare.py). Pure ASGI, so that streamed downloads and
redirects pass through untouched and get the headers too.
"""

from __future__ import annotations

import random
import re
import time
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import route_template
from observability import logs, metrics

SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""Short and printable: anything else (control characters, a megabyte, a forged log line) is replaced."""

ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # download links carry their token in the URL
    "X-Frame-Options": "DENY",
}
HSTS = "max-age=63072000; includeSubDomains"
CREDENTIAL_PARAMS = frozenset({"token", "access_token", "refresh_token"})


def new_request_id() -> str:
    """32 hex digits from the process's seeded generator (reseeded in a forked child): an id must be unique, not
    secret, and os.urandom costs more CPU per call in a process set up as a served one (docs/benchmarks.md)."""
    return f"{random.getrandbits(128):032x}"


def carries_credentials(authorization: bool, query: bytes) -> bool:
    """Sent with a bearer token or a download link's token: the answer is someone's own and must not be stored.
    The query is decoded as the routes decode it (`%74oken` is `token`)."""
    if authorization:
        return True
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True) if query else []
    return any(name in CREDENTIAL_PARAMS for name, _ in pairs)


class RequestEdge:
    def __init__(self, app: ASGIApp, *, hsts: bool, access_log: bool) -> None:
        self.app = app
        fixed = {**ALWAYS, **({"Strict-Transport-Security": HSTS} if hsts else {})}
        self.headers = [(name.lower().encode(), value.encode()) for name, value in fixed.items()]
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent, authorization = None, False
        for name, value in scope["headers"]:
            if name == b"x-request-id" and sent is None:  # the first one counts, sane or not
                sent = value.decode("latin-1")
            elif name == b"authorization":
                authorization = True
        rid = sent if sent is not None and SANE_REQUEST_ID.fullmatch(sent) else new_request_id()
        private = carries_credentials(authorization, scope.get("query_string", b""))
        state: dict[str, Any] = scope.setdefault("state", {})  # shared with request.state: user_id lands here
        if self.access_log:
            state[logs.ACCESS_LINE] = True  # a workflow the request starts is named on it
        id_token, state_token = logs.request_id.set(rid), logs.request_state.set(state)
        status = 500  # an exception that escapes every handler becomes a 500
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [pair for pair in message.get("headers", []) if pair[0].lower() != b"x-request-id"]
                taken = {name.lower() for name, _ in headers}
                headers.extend(pair for pair in self.headers if pair[0] not in taken)
                if private and b"cache-control" not in taken:
                    headers.append((b"cache-control", b"no-store"))
                headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
            await send(message)

        metrics.http_requests_in_flight.inc()
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            metrics.http_requests_in_flight.dec()
            seconds = time.perf_counter() - started
            method, route = scope["method"], route_template(scope)
            metrics.http_requests.labels(method, route, str(status)).inc()
            metrics.http_request_duration.labels(method, route).observe(seconds)
            if self.access_log:
                logs.log_access(method, route, status, round(seconds * 1000, 1))
            logs.request_state.reset(state_token)
            logs.request_id.reset(id_token)
