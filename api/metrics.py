"""GET /metrics, and the route template that labels a request's metrics and its access line."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.ratelimit import NotLimited
from observability import metrics
from services.security import bearer_matches
from settings import Settings

log = logging.getLogger(__name__)

ROUTE_LABEL = "statex.route"
"""The scope key where a mounted app (which FastAPI's router does not put in the scope as `route`) names its label."""


def route_template(scope: Scope) -> str:
    """`/api/files/{file_id}`, read from the route FastAPI put in the scope once routed: never a raw path (ids
    would make labels without end, and a query may hold a download token). A mount labelled by `labelled`: its
    path. Unrouted: `unmatched`."""
    return getattr(scope.get("route"), "path", None) or scope.get(ROUTE_LABEL) or metrics.UNMATCHED_ROUTE


def labelled(app: ASGIApp, label: str) -> ASGIApp:
    """A mounted app whose requests all count under one route label (its mount path, say: one label, however many
    files it serves)."""

    async def named(scope: Scope, receive: Receive, send: Send) -> None:
        scope[ROUTE_LABEL] = label
        await app(scope, receive, send)

    return named


def install_metrics(app: FastAPI, settings: Settings) -> None:
    """GET /metrics when METRICS_ENABLED (the requests are counted by api/edge.py either way)."""
    if not settings.metrics_enabled:
        return
    closed = settings.is_production and settings.metrics_token is None
    if closed:
        log.warning("METRICS_TOKEN is not set: in production GET /metrics refuses every caller until it is")

    @app.get("/metrics", include_in_schema=False, dependencies=[NotLimited])
    async def prometheus_metrics(request: Request) -> Response:
        """Open only in development and tests without a token; production needs METRICS_TOKEN."""
        token = settings.metrics_token
        if closed or (
            token is not None and not bearer_matches(request.headers.get("authorization"), token.get_secret_value())
        ):
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)
