"""Helpers the payment tests share: the API on a real HTTP port (gateways post webhooks to it), signing,
and reading what a payment's workflow did from its Temporal history."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import stripe
import uvicorn
from fastapi import FastAPI
from helpers import bearer, eventually
from payload_keys import CONVERTER
from servers import free_port
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from models.catalogue import catalogue
from models.db import open_session
from models.enums import PaymentGateway, ServiceTier
from models.messages.payments import PaymentProgress
from models.tables import Payment, User
from services.payments import checkout_order
from settings import Settings
from worker import build_worker
from workflows.checkout import CheckoutWorkflow, workflow_id

T = TypeVar("T")


@asynccontextmanager
async def serve_http(app: FastAPI) -> AsyncIterator[str]:
    """The app under uvicorn on a free 127.0.0.1 port, for callers outside this process (gateway fakes)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    host, port = listener.getsockname()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", server_header=False))
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        await eventually(lambda: _started(server), within=20, what="uvicorn to start")
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
        listener.close()


async def _started(server: uvicorn.Server) -> bool:
    return server.started


def with_gateway(settings: Settings, **gateway: Any) -> Settings:
    """Test settings pointed at one gateway; the workflow polls only hourly, so the tests' webhooks drive it."""
    return settings.model_copy(update={**gateway, "payment_poll_seconds": 3600})


async def post_webhook(
    http: httpx.AsyncClient, gateway: PaymentGateway, delivery: tuple[bytes, dict[str, str]]
) -> httpx.Response:
    body, headers = delivery
    return await http.post(f"/api/payments/webhooks/{gateway}", content=body, headers=headers)


async def assert_forgeries_refused(
    http: httpx.AsyncClient,
    temporal: Client,
    token: str,
    payment_id: str,
    send: Callable[[T], Awaitable[httpx.Response]],
    forgeries: dict[str, T],
    refusal: str,
) -> None:
    """Each forged delivery gets a 400 that says why; afterwards the workflow has had no signal at all and the
    payment is still PENDING."""
    for name, forgery in forgeries.items():
        response = await send(forgery)
        assert response.status_code == 400, (name, response.text)
        assert refusal in response.json()["error"], name
    assert (await workflow_calls(temporal, payment_id))[1] == 0
    assert await payment_status(http, token, payment_id) == "PENDING"


def stripe_signature(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header exactly as Stripe computes it: HMAC-SHA256 of "<t>.<body>"."""
    moment = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{moment}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={moment},v1={digest}"


def signed_stripe_event(
    event: dict[str, Any], secret: str, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    return body, {"Stripe-Signature": stripe_signature(body, secret, timestamp), "Content-Type": "application/json"}


async def checkout(
    http: httpx.AsyncClient, token: str, body: dict[str, Any], key: str | None = None, expect: int = 201
) -> dict[str, Any]:
    headers = {**bearer(token), "Idempotency-Key": key or uuid.uuid4().hex}
    response = await http.post("/api/payments/checkout", json=body, headers=headers)
    assert response.status_code == expect, response.text
    return response.json()


async def payment_status(http: httpx.AsyncClient, token: str, payment_id: str) -> str:
    response = await http.get(f"/api/payments/{payment_id}", headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()["status"]


async def wait_for_status(http: httpx.AsyncClient, token: str, payment_id: str, wanted: str) -> None:
    async def reached() -> bool:
        return await payment_status(http, token, payment_id) == wanted

    await eventually(reached, within=30, what=f"payment {payment_id} to be {wanted}")


async def tier_of(http: httpx.AsyncClient, token: str) -> str:
    response = await http.get("/auth/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()["tier"]


async def workflow_calls(temporal: Client, payment_id: str) -> tuple[Counter[str], int]:
    """How often each activity was scheduled in the payment's workflow, and how many signals it received."""
    activities: Counter[str] = Counter()
    signals = 0
    async for event in temporal.get_workflow_handle(workflow_id(uuid.UUID(payment_id))).fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            activities[event.activity_task_scheduled_event_attributes.activity_type.name] += 1
        if event.HasField("workflow_execution_signaled_event_attributes"):
            signals += 1
    return activities, signals


def receipts(settings: Settings, payment_id: str) -> list[Path]:
    return sorted(settings.outbox_dir.glob(f"payment-{payment_id}-*.eml"))


@asynccontextmanager
async def time_skipping_checkout(
    settings: Settings, engine: AsyncEngine, gateway: PaymentGateway
) -> AsyncIterator[tuple[WorkflowEnvironment, WorkflowHandle[Any, PaymentProgress]]]:
    """A PREMIUM checkout's workflow, started on a time-skipping server of its own (its clock is shared by
    everything in it, so no other test's timers move with it), with a worker for it."""
    price = catalogue().price(ServiceTier.PREMIUM, gateway, None, btcpay_currency=settings.btcpay_currency)
    async with open_session(engine) as db:
        user = User(email=f"expiry-{uuid.uuid4().hex[:8]}@example.com", password_hash="x")
        db.add(user)
        await db.flush()
        payment = Payment(
            user_id=user.id, amount_minor=price.amount_minor, currency=price.currency, gateway=gateway, tier=price.tier
        )
        db.add(payment)
        await db.commit()
    env = await WorkflowEnvironment.start_time_skipping(
        port=free_port(),
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        data_converter=CONVERTER,
    )
    try:
        async with build_worker(env.client, settings, engine):
            handle = await env.client.start_workflow(
                CheckoutWorkflow.run,
                checkout_order(settings, payment, price),
                id=workflow_id(payment.id),
                task_queue=settings.temporal_task_queue,
            )
            yield env, handle
    finally:
        await env.shutdown()


async def run_unpaid_checkout(settings: Settings, engine: AsyncEngine, gateway: PaymentGateway) -> PaymentProgress:
    """A checkout nobody pays: the workflow runs to its expiry in seconds. Returns the workflow's result."""
    async with time_skipping_checkout(settings, engine, gateway) as (_, handle):
        progress = await handle.result()
    async with open_session(engine) as db:
        stored = await db.get(Payment, progress.payment_id)
        owner = await db.get(User, stored.user_id) if stored else None
    assert stored is not None and stored.status == progress.status
    assert owner is not None and owner.tier == ServiceTier.STANDARD
    return progress


@asynccontextmanager
async def payment_stack(settings: Settings, temporal: Client, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """A worker and the API with these settings (the API on a real port, for the gateways' webhooks), and a
    client for the API."""
    async with (
        build_worker(temporal, settings, engine),
        serve_http(create_app(settings, temporal=temporal)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as client,
    ):
        yield client


WEBHOOK_SECRET = "whsec_statex_test_secret"
PREMIUM_BY_STRIPE = {"tier": "PREMIUM", "gateway": "STRIPE"}


async def pay(customer: stripe.StripeClient, client_secret: str, card: str = "4242424242424242") -> str:
    intent_id = client_secret.split("_secret_")[0]
    method = await customer.v1.payment_methods.create_async(
        {"type": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    await customer.v1.payment_intents.update_async(intent_id, {"payment_method": method.id})
    await customer.v1.payment_intents.confirm_async(intent_id)
    return intent_id


def register_webhook(localstripe_url: str, api_url: str) -> None:
    response = httpx.post(
        f"{localstripe_url}/_config/webhooks/statex",
        data={"url": f"{api_url}/api/payments/webhooks/STRIPE", "secret": WEBHOOK_SECRET},
    )
    assert response.status_code == 200, response.text
