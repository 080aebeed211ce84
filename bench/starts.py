"""Workflow starts: POST /api/contact through the API against a raw temporalio client starting the same
ContactWorkflow, with the same input, start options (search attributes, summary) and data converter (payloads
encrypted as the API's are), on the same Temporal dev server (no worker: a start is what is measured); and the
same raw client committing the contact's row with plain psycopg before each start, as the API stages it. The API
is driven by bench/wire.py's lean client, so that the generator's own HTTP work does not take the cores the two
sides share. Alternating rounds; the median of each side, and their ratio."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import psycopg
from temporalio.client import Client

from bench import wire
from models import search_attributes
from models.messages.contact import ContactNotice
from services.contact import SUMMARY
from services.temporal import start_options
from settings import Settings
from workflows.codec import data_converter
from workflows.contact import START_POLICY, ContactWorkflow, workflow_id

MESSAGE = {"name": "Bench", "message": "A benchmark message."}
CONTACT_ROW = (
    "INSERT INTO contacts (id, user_id, name, email, phone, subject, message, status, ip, created_at, notified_at)"
    " VALUES (%s, NULL, %s, %s, NULL, NULL, %s, 'RECEIVED', '127.0.0.1', now(), NULL)"
)


async def _rate(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def bounded(index: int) -> None:
        async with gate:
            await one(index)

    started = time.perf_counter()
    await asyncio.gather(*(bounded(index) for index in range(count)))
    return count / (time.perf_counter() - started)


async def through_api(port: int, count: int, concurrency: int) -> float:
    pool, run = wire.Pool(port, concurrency), uuid.uuid4().hex[:8]

    async def one(index: int) -> None:
        body = json.dumps({**MESSAGE, "email": f"bench-{run}-{index}@example.com"}).encode()
        request = wire.request_bytes("POST", "/api/contact", {"Content-Type": "application/json"}, body)
        status, answer = await asyncio.wait_for(pool.send(request), 30)
        if status >= 300:
            raise RuntimeError(f"POST /api/contact answered {status}: {answer[:200]!r}")

    try:
        return await _rate(count, concurrency, one)
    finally:
        pool.close()


async def raw_client(settings: Settings, count: int, concurrency: int, *, database_url: str | None = None) -> float:
    """With `database_url`, each start first commits the contact's row with plain psycopg, as the API stages it:
    the anchor for the API's design (a row, then its workflow) without its HTTP, framework and service layers."""
    # The API's data converter (pydantic, payloads encrypted with PAYLOAD_KEYS): the same bytes reach the server.
    client = await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace, data_converter=data_converter(settings)
    )
    connections: asyncio.Queue[psycopg.AsyncConnection[tuple[object, ...]]] = asyncio.Queue()
    if database_url:
        for _ in range(concurrency):
            connections.put_nowait(await psycopg.AsyncConnection.connect(database_url, autocommit=True))

    async def one(index: int) -> None:
        contact_id = uuid.uuid4()
        email = f"raw-{index}@example.com"
        if database_url:
            connection = await connections.get()
            try:
                await connection.execute(CONTACT_ROW, (contact_id, MESSAGE["name"], email, MESSAGE["message"]))
            finally:
                connections.put_nowait(connection)
        notice = ContactNotice(contact_id=contact_id, team_address=settings.email_team_address)  # as the API's
        attributes = search_attributes.for_resource(
            contact_id, None, contact_key=search_attributes.contact_key(settings, email)
        )
        # The options the API's start sends (task queue, id policy, search attributes, summary): the same work for
        # the server, so that the ratio is the API's own cost.
        await client.start_workflow(
            ContactWorkflow.run,
            notice,
            **start_options(settings, workflow_id(contact_id), START_POLICY, attributes, SUMMARY),
        )

    try:
        return await _rate(count, concurrency, one)
    finally:
        while not connections.empty():
            await connections.get_nowait().close()


def compare_starts(
    port: int, settings: Settings, database_url: str, *, count: int = 400, concurrency: int = 32, rounds: int = 3
) -> None:
    api: list[float] = []
    raw: list[float] = []
    staged: list[float] = []
    for _ in range(rounds):
        api.append(wire.run(through_api(port, count, concurrency)))
        raw.append(wire.run(raw_client(settings, count, concurrency)))
        staged.append(wire.run(raw_client(settings, count, concurrency, database_url=database_url)))
    mine, anchor, with_row = statistics.median(api), statistics.median(raw), statistics.median(staged)
    print(
        f"\nworkflow starts, {count} at concurrency {concurrency}, median of {rounds} rounds (PostgreSQL; no worker):\n"
        f"  POST /api/contact {mine:8.0f} starts/s   raw temporalio client {anchor:8.0f} starts/s   "
        f"ratio {mine / anchor:.2f}x   (rounds: api {_rounds(api)}; raw {_rounds(raw)})\n"
        f"  raw client committing the row first (psycopg, then the start, as the API stages it) {with_row:8.0f}"
        f" starts/s: the API at {mine / with_row:.2f}x of it (rounds: {_rounds(staged)})",
        flush=True,
    )


def _rounds(rates: list[float]) -> str:
    return ", ".join(f"{rate:.0f}" for rate in rates)
