"""Swagger UI and ReDoc served by the app itself: no CDN, so /docs works offline and behind strict CSPs.

The assets come from the `fastapi-offline` package (MIT), which ships Swagger UI's and ReDoc's bundles; we
use only its files and build the pages with FastAPI's own helpers.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from api.metrics import labelled
from api.ratelimit import NotLimited

OPENAPI_URL = "/openapi.json"
ASSETS_URL = "/docs-assets"
_ASSETS = files("fastapi_offline") / "static"

TAGS = [
    {"name": "auth", "description": "Register, log in, rotate refresh tokens, log out; who am I."},
    {"name": "contact", "description": "The contact form: emails the team and confirms to the sender."},
    {"name": "files", "description": "Uploads kept 24 hours, then deleted by a durable timer; download and delete."},
    {"name": "ai", "description": "Chat with the AI tier your account may use (2 AI requests a day)."},
    {"name": "chats", "description": "A chat answer that took longer than the request waited."},
    {"name": "prototypes", "description": "An app idea (text or voice) in, a verified prototype zip out; poll it."},
    {"name": "payments", "description": "Buy a service tier: server-side prices, four gateways, refunds, webhooks."},
    {"name": "me", "description": "Your data: a copy of all of it (export), or its erasure."},
    {"name": "capabilities", "description": "What this server can do: providers, voice, gateways, limits."},
    {"name": "health", "description": "Liveness and readiness probes."},
]


def _models_with_examples() -> dict[str, type[BaseModel]]:
    """The API's models (models.api) that carry examples (models.api.common.examples), by class name."""
    found: dict[str, type[BaseModel]] = {}
    pending: list[type[BaseModel]] = [BaseModel]
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        extra = model.model_config.get("json_schema_extra")
        if model.__module__.startswith("models.api.") and isinstance(extra, dict) and "examples" in extra:
            found[model.__name__] = model
    return found


def keeping_example_nulls(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi`, with each model's examples as the model gives them. FastAPI drops every null from the document
    it builds (fastapi/fastapi#5559), nulls of examples included, so an example of a field that is required but
    may be null would no longer be valid; the examples are put back once, when the document is first built."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.get("components", {}).get("schemas", {})
        for name, model in _models_with_examples().items():
            extra = model.model_config.get("json_schema_extra")
            if name in components and isinstance(extra, dict):
                components[name]["examples"] = extra["examples"]
        return schema

    return openapi


def install_docs(app: FastAPI) -> None:
    """/openapi.json, /docs (Swagger UI, Authorize included) and /redoc, from packaged assets. Each counts under a
    route label of its own in the metrics: the assets under their mount path, one label for all the files."""
    app.mount(ASSETS_URL, labelled(StaticFiles(directory=str(_ASSETS)), ASSETS_URL), name="docs-assets")
    redirect_url = "/docs/oauth2-redirect"

    @app.get(OPENAPI_URL, include_in_schema=False, dependencies=[NotLimited])
    async def openapi_document(request: Request) -> JSONResponse:
        """What FastAPI's own `openapi_url` serves (with the root path as the first server, behind a proxy that
        strips one), as an API route: FastAPI's is a plain route that its router does not name in the scope."""
        schema: dict[str, Any] = app.openapi()
        root = request.scope.get("root_path", "").rstrip("/")
        if root and root not in {server.get("url") for server in schema.get("servers", [])}:
            schema = {**schema, "servers": [{"url": root}, *schema.get("servers", [])]}
        return JSONResponse(schema)

    @app.get("/docs", include_in_schema=False, dependencies=[NotLimited])
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{OPENAPI_URL}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{redirect_url}",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get(redirect_url, include_in_schema=False, dependencies=[NotLimited])
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False, dependencies=[NotLimited])
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{OPENAPI_URL}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
