"""/health (the process is alive) and /ready (the database and Temporal answer)."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from models.api.common import HealthStatus

router = APIRouter(tags=["health"])

_CHECK_TIMEOUT_SECONDS = 3.0


@router.get("/health", response_model=HealthStatus)
async def health() -> HealthStatus:
    return HealthStatus(status="ok")


@router.get("/ready", response_model=HealthStatus, responses={503: {"model": HealthStatus}})
async def ready(request: Request) -> JSONResponse:
    checks = dict(
        zip(
            ("database", "temporal"),
            await asyncio.gather(_check(_database(request)), _check(_temporal(request))),
            strict=True,
        )
    )
    healthy = all(result == "ok" for result in checks.values())
    body = HealthStatus(status="ok" if healthy else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


async def _database(request: Request) -> None:
    async with request.app.state.runtime.database.engine.connect() as connection:
        await connection.execute(sa.text("SELECT 1"))


async def _temporal(request: Request) -> None:
    await request.app.state.runtime.temporal.service_client.check_health()


async def _check(probe: object) -> str:
    try:
        await asyncio.wait_for(probe, _CHECK_TIMEOUT_SECONDS)  # type: ignore[arg-type]
    except Exception as err:
        return f"failed: {type(err).__name__}"
    return "ok"
