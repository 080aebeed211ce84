"""Workflow starts: POST /api/contact through the API against a raw temporalio client starting the same
ContactWorkflow, with the same input and search attributes, on the same Temporal dev server (no worker: a start
is what is measured). Alternating rounds; the median of each side, and their ratio."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from models.messages.contact import ContactNotice
from settings import Settings
from workflows import search_attributes
from workflows.contact import START_POLICY, ContactWorkflow, workflow_id

MESSAGE = {"name": "Bench", "message": "A benchmark message."}


async def _rate(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def bounded(index: int) -> None:
        async with gate:
            await one(index)

    started = time.perf_counter()
    await asyncio.gather(*(bounded(index) for index in range(count)))
    return count / (time.perf_counter() - started)


async def through_api(port: int, count: int, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as http:
        run = uuid.uuid4().hex[:8]

        async def one(index: int) -> None:
            body = {**MESSAGE, "email": f"bench-{run}-{index}@example.com"}
            (await http.post("/api/contact", json=body)).raise_for_status()

        return await _rate(count, concurrency, one)


async def raw_client(settings: Settings, count: int, concurrency: int) -> float:
    client = await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace, data_converter=pydantic_data_converter
    )

    async def one(index: int) -> None:
        contact_id = uuid.uuid4()
        notice = ContactNotice(contact_id=contact_id, team_address=settings.email_team_address)  # as the API's
        await client.start_workflow(
            ContactWorkflow.run,
            notice,
            id=workflow_id(contact_id),
            task_queue=settings.temporal_task_queue,
            id_conflict_policy=START_POLICY.conflict_policy,
            id_reuse_policy=START_POLICY.reuse_policy,
            search_attributes=search_attributes.for_resource(contact_id, None),
        )

    return await _rate(count, concurrency, one)


def compare_starts(port: int, settings: Settings, *, count: int = 400, concurrency: int = 32, rounds: int = 3) -> None:
    api: list[float] = []
    raw: list[float] = []
    for _ in range(rounds):
        api.append(asyncio.run(through_api(port, count, concurrency)))
        raw.append(asyncio.run(raw_client(settings, count, concurrency)))
    mine, anchor = statistics.median(api), statistics.median(raw)
    print(
        f"\nworkflow starts, {count} at concurrency {concurrency}, median of {rounds} rounds (PostgreSQL; no worker):\n"
        f"  POST /api/contact {mine:8.0f} starts/s   raw temporalio client {anchor:8.0f} starts/s   "
        f"ratio {mine / anchor:.2f}x   (rounds: api {', '.join(f'{r:.0f}' for r in api)}; "
        f"raw {', '.join(f'{r:.0f}' for r in raw)})",
        flush=True,
    )
