"""create_app(): lifespan (database, migrations, Temporal client, rate limiter), middleware, routers, errors."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from temporalio.client import Client

from activities.storage import build_storage
from api.bodylimit import BodyLimitMiddleware
from api.docs import TAGS, install_docs, keeping_example_nulls
from api.edge import RequestEdge
from api.errors import errors, install_error_handlers
from api.metrics import install_metrics
from api.ratelimit import RateLimiter
from api.routes import auth, capabilities, chat, codec, contact, files, health, me, payments, prototypes
from api.shedding import LoadShedding
from api.uploads import UploadSlots
from models.api.common import ErrorResponse, RateLimitResponse
from models.db import database_for, migrate
from observability import metrics
from observability.logs import configure_logging, stop_queueing
from observability.redaction import install_log_redaction
from observability.sentry import init_sentry
from observability.tracing import configure_tracing, trace_requests
from services.data_folder import close_data_dir_or_exit
from services.prototypes import EventWatchers
from services.runtime import Runtime
from settings import Settings, get_settings
from workflows.client import connect

log = logging.getLogger(__name__)

CLIENT_RUNTIME_THREADS = "TOKIO_WORKER_THREADS"

COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing, invalid or expired access token"},
    413: {"model": ErrorResponse, "description": "The body is larger than allowed (MAX_JSON_BODY_BYTES)"},
    422: {"model": ErrorResponse, "description": "The request is invalid; `details` names each field"},
    429: {"model": RateLimitResponse, "description": "Daily limit reached; see Retry-After"},
}


def operation_id(route: APIRoute) -> str:
    """`auth-register`, `files-download`: names that generated clients can use as they are."""
    name = route.name.replace("_", "-")
    return name if not route.tags else f"{route.tags[0]}-{name}"


def serve() -> FastAPI:
    """uvicorn's factory for a served API (`statex api`, `statex run`, the image): the process's logging
    from settings, then the app. Tests call create_app and keep pytest's own log capture."""
    settings = get_settings()
    close_data_dir_or_exit(settings)  # first: umask 077, DATA_DIR owner-only, before anything writes there
    # The Temporal client's runtime (Rust, tokio) starts a thread per core by default; this process only sends
    # client calls, which one thread carries, and waking more threads to share each call costs CPU on every
    # workflow start (docs/benchmarks.md). tokio reads the variable when the runtime is built, at connect.
    os.environ.setdefault(CLIENT_RUNTIME_THREADS, "1")
    configure_logging(settings, queued=True)  # access lines are written off the event loop
    provider = configure_tracing(settings, "api")
    app = create_app(settings, served=True)
    if provider is not None:
        trace_requests(app, provider)
    return app


def create_app(settings: Settings | None = None, *, temporal: Client | None = None, served: bool = False) -> FastAPI:
    """`temporal` lets a caller share one client; otherwise the lifespan connects from settings. `served`: a
    process that serves the API (not a test's app): its database pool is opened at startup rather than by the
    first burst of requests, and what startup built is frozen out of the garbage collector's reach."""
    settings = settings or get_settings()
    install_log_redaction()  # here, so that every way of serving the API logs no download token
    init_sentry(settings, component="api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = database_for(settings)
        if settings.run_migrations_on_start:
            await migrate(database.engine)
        await database.open(warm=served)
        app.state.runtime = Runtime(
            settings=settings,
            database=database,
            temporal=temporal or await connect(settings),
            storage=build_storage(settings),
        )
        app.state.rate_limiter = RateLimiter(settings)
        app.state.event_watchers = EventWatchers(app.state.runtime)
        if served:  # modules, routes, schemas live as long as the process: a full collection scanned them all,
            gc.collect()  # before the first request, so none waits on it; frozen, they are never scanned again
            gc.freeze()
        try:
            yield
        finally:
            await app.state.event_watchers.close()
            await app.state.rate_limiter.close()
            await app.state.runtime.storage.aclose()
            await database.close()
            await database.engine.dispose()
            if served:
                metrics.end_this_process()
            stop_queueing()  # a served process's last lines (uvicorn's, after this) are written as they come

    app = FastAPI(
        generate_unique_id_function=operation_id,
        title="Statex API",
        version="0.1.0",
        summary="Describe an app idea, get a prototype; payments and 24-hour file storage.",
        lifespan=lifespan,
        responses={500: {"model": ErrorResponse, "description": "Unexpected error"}},
        openapi_tags=TAGS,
        servers=[{"url": settings.public_api_url, "description": "This API (PUBLIC_API_URL)"}],
        docs_url=None,  # /docs and /redoc are served from packaged assets by install_docs, not from a CDN
        redoc_url=None,
        openapi_url=None,  # /openapi.json is served by install_docs, as an API route the metrics can label
        # Spans come from observability/tracing.py (when OTEL_EXPORTER_OTLP_ENDPOINT is set), metrics from
        # Prometheus, lines from observability/logs.py: FastAPI's own telemetry would only look up
        # OpenTelemetry's providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.openapi = keeping_example_nulls(app)  # type: ignore[method-assign]  # FastAPI's documented way to extend it
    app.state.settings = settings
    app.state.upload_slots = UploadSlots(settings.uploads_per_user_at_once)
    app.add_middleware(BodyLimitMiddleware, settings=settings)  # inside CORS, so that its 413 is readable too
    app.add_middleware(LoadShedding, max_in_flight=settings.api_max_concurrency)  # inside CORS and the headers
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.effective_cors_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        # Last-Event-ID: EventSource's reconnect sends it, so a cross-origin resume is preflighted for it.
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
        expose_headers=["Retry-After", "Location", "X-Request-ID"],
        max_age=600,
    )
    app.add_middleware(codec.CodecCors, origins=settings.effective_temporal_ui_origins)
    # Outermost: every answer, CORS's own included, gets the headers, an id, its metrics and a line, timed in full.
    app.add_middleware(RequestEdge, hsts=settings.api_behind_tls, access_log=settings.access_log_enabled)
    install_error_handlers(app, hide_internal_errors=settings.is_production)

    # A request's path is tried against every route of each router in turn until one matches, so the order is
    # a cost (no answer depends on it, tests/api/test_routing.py): first what is asked most often and does least
    # work besides, the probes, then what a frontend asks on every load, then the signed-in routes.
    app.include_router(health.router)
    app.include_router(capabilities.router)
    for router in (
        payments.router,  # the catalogue, first among its routes
        auth.router,
        files.router,
        prototypes.router,  # its two submissions before the status routes: the documentation's order within a tag
        prototypes.status_router,  # polled while a prototype is made
        chat.status_router,
        me.router,
        contact.router,
        chat.router,
    ):
        app.include_router(router, responses=COMMON_RESPONSES)
    app.include_router(payments.webhooks, responses=errors(413))
    app.include_router(codec.router)  # operators only
    if settings.docs_enabled:
        install_docs(app)
    install_metrics(app, settings)
    return app
