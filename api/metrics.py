"""The API's request metrics (an ASGI middleware) and GET /metrics."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import metrics
from services.security import bearer_matches
from settings import Settings


def route_template(scope: Scope) -> str:
    """`/api/files/{file_id}`, read from the route FastAPI put in the scope once routed: never a raw path (ids
    would make labels without end, and a query may hold a download token). Unrouted: `unmatched`."""
    return getattr(scope.get("route"), "path", None) or metrics.UNMATCHED_ROUTE


class RequestMetrics:
    """Counts each HTTP request by method, route template and status, and times it by route template.

    The template (`/api/files/{file_id}`) is read after routing, from the route FastAPI put in the scope, so
    no id ever becomes a label; a request no route matched is `unmatched`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an exception that escapes every handler becomes a 500
        started = time.perf_counter()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.http_requests_in_flight.inc()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            metrics.http_requests_in_flight.dec()
            template = route_template(scope)
            method = scope["method"]
            metrics.http_requests.labels(method, template, str(status)).inc()
            metrics.http_request_duration.labels(method, template).observe(time.perf_counter() - started)


def install_metrics(app: FastAPI, settings: Settings) -> None:
    """The middleware always (its cost is a few counter increments); GET /metrics when METRICS_ENABLED."""
    app.add_middleware(RequestMetrics)
    if not settings.metrics_enabled:
        return

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        token = settings.metrics_token
        if token is not None and not bearer_matches(request.headers.get("authorization"), token.get_secret_value()):
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)
