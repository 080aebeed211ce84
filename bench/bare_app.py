"""The anchor: a bare FastAPI app on the same server configuration, answering the same paths with fixed JSON
(the project's own catalogue document, read from BENCH_CATALOGUE_JSON). No database, no middleware."""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI


def create_app() -> FastAPI:
    app = FastAPI()
    catalogue: Any = json.loads(os.environ.get("BENCH_CATALOGUE_JSON", "{}"))
    me = {"id": "00000000-0000-0000-0000-000000000000", "email": "a@example.com", "name": None, "tier": "STANDARD"}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/auth/me")
    async def auth_me() -> dict[str, Any]:
        return me

    @app.get("/api/files")
    async def files() -> list[Any]:
        return []

    @app.get("/api/payments/catalogue")
    async def payments_catalogue() -> Any:
        return catalogue

    return app
