"""A checkout while no worker polls (every worker down, or being replaced): the API answers 202 with the status
URL and keeps the payment; once a worker polls, the same checkout goes on to be paid, charged once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import stripe
from fakes.stripe_emulator import SECRET_KEY, running_localstripe
from helpers import bearer, register_and_login
from payments_support import (
    PREMIUM_BY_STRIPE,
    WEBHOOK_SECRET,
    checkout,
    pay,
    register_webhook,
    serve_http,
    wait_for_status,
    with_gateway,
    workflow_calls,
)
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from api.app import create_app
from models.db import open_session
from models.tables import Payment
from settings import Settings
from worker import build_worker


@pytest.fixture(scope="module")
def localstripe_url() -> Iterator[str]:
    with running_localstripe() as url:
        yield url


@pytest.fixture
def stripe_settings(settings: Settings, localstripe_url: str) -> Settings:
    """Stripe at localstripe; a short RPC timeout, so the update nobody accepts gives up in a second."""
    return with_gateway(
        settings,
        stripe_secret_key=SecretStr(SECRET_KEY),
        stripe_webhook_secret=SecretStr(WEBHOOK_SECRET),
        stripe_api_base=localstripe_url,
        temporal_rpc_timeout_seconds=1.5,
    )


@pytest.fixture
async def api_url(stripe_settings: Settings, temporal: Client) -> AsyncIterator[str]:
    async with serve_http(create_app(stripe_settings, temporal=temporal)) as url:
        yield url


async def test_a_checkout_with_no_worker_is_accepted_kept_and_paid_once_a_worker_polls(
    api_url: str, localstripe_url: str, stripe_settings: Settings, temporal: Client, engine: AsyncEngine
) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        account = await register_and_login(http)
        token = account["access_token"]
        queued = await checkout(http, token, PREMIUM_BY_STRIPE, key="while-down", expect=202)
        payment_id = queued["payment"]["id"]
        assert queued["status_url"] == f"/api/payments/{payment_id}"
        assert queued["payment"]["status"] == "PENDING" and queued["payment"]["next_action"] is None
        assert "queued until a worker takes it" in queued["message"]
        status = await http.get(queued["status_url"], headers=bearer(token))
        assert (status.status_code, status.json()["status"]) == (200, "PENDING")
        async with open_session(engine) as db:
            assert await db.get(Payment, uuid.UUID(payment_id)) is not None  # kept, not deleted as "nothing saved"
        repeated = await checkout(http, token, PREMIUM_BY_STRIPE, key="while-down", expect=202)
        assert repeated["payment"]["id"] == payment_id

        async with build_worker(temporal, stripe_settings, engine):
            resumed = await checkout(http, token, PREMIUM_BY_STRIPE, key="while-down")  # 201: the next step now
            assert resumed["payment"]["id"] == payment_id
            client_secret = resumed["payment"]["next_action"]["client_secret"]
            register_webhook(localstripe_url, api_url)
            customer = stripe.StripeClient(
                SECRET_KEY, base_addresses={"api": localstripe_url}, http_client=stripe.HTTPXClient()
            )
            await pay(customer, client_secret)
            await wait_for_status(http, token, payment_id, "COMPLETED")
        listed = (await http.get("/api/payments", headers=bearer(token))).json()
        assert [payment["id"] for payment in listed] == [payment_id]
        activities, _ = await workflow_calls(temporal, payment_id)
        assert activities["create_at_gateway"] == 1
