"""/health (the process is alive) and /ready (the database, Redis, Temporal and, unless told not to check it, a
worker answer)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from api.ratelimit import NotLimitedRoute
from models.api.common import HealthStatus, ReadyStatus

router = APIRouter(tags=["health"], route_class=NotLimitedRoute)  # probes are never refused

_CHECK_TIMEOUT_SECONDS = 3.0


class NoWorker(Exception):
    """No worker has polled the task queue lately: every workflow would wait."""


@router.get("/health", response_model=HealthStatus)
async def health() -> HealthStatus:
    return HealthStatus(status="ok")


@router.get("/ready", response_model=ReadyStatus, responses={503: {"model": ReadyStatus}})
async def ready(
    request: Request,
    worker: Annotated[
        bool,
        Query(
            description="Also check that a worker polls the task queue. A load balancer's readiness probe asks "
            "worker=false: this process serves every request without a worker (a start waits for one with 202), "
            "so a worker outage must not take the API out of service"
        ),
    ] = True,
) -> JSONResponse:
    """Each check with its latency; 503 if any fails, a worker fleet that stopped polling included (unless
    worker=false)."""
    probes: dict[str, Callable[[Request], Awaitable[None]]] = {"database": _database}
    if request.app.state.settings.redis_url:
        probes["redis"] = _redis
    probes["temporal"] = _temporal
    if worker:
        probes["worker"] = _worker
    results = await asyncio.gather(*(_check(probe(request)) for probe in probes.values()))
    checks = {name: outcome for name, (outcome, _) in zip(probes, results, strict=True)}
    latency = {name: milliseconds for name, (_, milliseconds) in zip(probes, results, strict=True)}
    healthy = all(outcome == "ok" for outcome in checks.values())
    body = ReadyStatus(status="ok" if healthy else "unavailable", checks=checks, latency_ms=latency)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


async def _database(request: Request) -> None:
    async with request.app.state.runtime.database.engine.connect() as connection:
        await connection.execute(sa.text("SELECT 1"))


async def _redis(request: Request) -> None:
    if not await request.app.state.rate_limiter.storage.check():
        raise ConnectionError("Redis did not answer")


async def _temporal(request: Request) -> None:
    await request.app.state.runtime.temporal.service_client.check_health()


async def _worker(request: Request) -> None:
    """Temporal's own view of the task queue: when each worker last polled it for workflow tasks."""
    settings = request.app.state.settings
    client = request.app.state.runtime.temporal
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=settings.temporal_task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    since = datetime.now(UTC) - timedelta(seconds=settings.ready_worker_seen_seconds)
    if not any(poller.last_access_time.ToDatetime(tzinfo=UTC) >= since for poller in described.pollers):
        raise NoWorker(f"no worker polled {settings.temporal_task_queue!r} in {settings.ready_worker_seen_seconds:g} s")


async def _check(probe: Awaitable[None]) -> tuple[str, float]:
    """("ok" or "failed: <why>", how long the check took in milliseconds)."""
    started = time.perf_counter()
    try:
        await asyncio.wait_for(probe, _CHECK_TIMEOUT_SECONDS)
    except NoWorker as err:
        outcome = f"failed: {err}"
    except Exception as err:
        outcome = f"failed: {type(err).__name__}"
    else:
        outcome = "ok"
    return outcome, round((time.perf_counter() - started) * 1000, 1)
