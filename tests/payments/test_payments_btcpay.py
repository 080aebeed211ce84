"""Crypto checkout through BTCPay Server: API -> CheckoutWorkflow -> Greenfield API over httpx -> a local
BTCPay server (tests/fakes/btcpay_server.py), and its HMAC-signed webhooks."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fakes.btcpay_server import API_KEY, STORE_ID, WEBHOOK_SECRET, FakeBTCPay
from helpers import bearer, eventually, register_and_login
from payments_support import (
    assert_forgeries_refused,
    checkout,
    payment_stack,
    post_webhook,
    receipts,
    run_unpaid_checkout,
    serve_http,
    tier_of,
    time_skipping_checkout,
    wait_for_status,
    with_gateway,
    workflow_calls,
)
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from models.enums import PaymentGateway, PaymentStatus
from settings import Settings
from workflows.checkout import CheckoutWorkflow

PREMIUM_IN_CRYPTO = {"tier": "PREMIUM", "gateway": "CRYPTO_BTCPAY"}


@pytest.fixture
async def btcpay() -> AsyncIterator[FakeBTCPay]:
    fake = FakeBTCPay()
    async with serve_http(fake.app) as url:
        fake.base_url = url
        yield fake


@pytest.fixture
def btcpay_settings(settings: Settings, btcpay: FakeBTCPay) -> Settings:
    return with_gateway(
        settings,
        btcpay_url=btcpay.base_url,
        btcpay_api_key=SecretStr(API_KEY),
        btcpay_store_id=STORE_ID,
        btcpay_webhook_secret=SecretStr(WEBHOOK_SECRET),
    )


@pytest.fixture
async def http(btcpay_settings: Settings, temporal: Client, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with payment_stack(btcpay_settings, temporal, engine) as client:
        yield client


async def deliver(http: httpx.AsyncClient, delivery: tuple[bytes, dict[str, str]]) -> httpx.Response:
    return await post_webhook(http, PaymentGateway.CRYPTO_BTCPAY, delivery)


def delivery_id(delivery: tuple[bytes, dict[str, str]]) -> str:
    return json.loads(delivery[0])["deliveryId"]


async def test_a_settled_invoice_completes_the_payment_once_whatever_the_deliveries(
    http: httpx.AsyncClient, btcpay: FakeBTCPay, btcpay_settings: Settings, temporal: Client
) -> None:
    account = await register_and_login(http)
    token = account["access_token"]
    payment = (await checkout(http, token, PREMIUM_IN_CRYPTO))["payment"]
    invoice = btcpay.invoices[payment["gateway_id"]]
    assert (invoice["amount"], invoice["currency"], invoice["metadata"]["orderId"]) == ("99.00", "EUR", payment["id"])
    assert payment["next_action"]["redirect_url"] == invoice["checkoutLink"]

    processing = btcpay.webhook("InvoiceProcessing", invoice["id"])
    btcpay.settle(invoice["id"])
    settled = btcpay.webhook("InvoiceSettled", invoice["id"], manuallyMarked=False)
    redelivered = btcpay.webhook("InvoiceSettled", invoice["id"], redelivery_of=delivery_id(settled))
    for delivery in (settled, processing, redelivered, processing, settled):  # out of order, and again
        assert (await deliver(http, delivery)).status_code == 200

    await wait_for_status(http, token, payment["id"], "COMPLETED")
    assert await tier_of(http, token) == "PREMIUM"
    activities, signals = await workflow_calls(temporal, payment["id"])
    assert signals == 5 and activities["complete_payment"] == 1 and activities["send_user_email"] == 1
    assert len(receipts(btcpay_settings, payment["id"])) == 1


async def test_forged_stale_or_foreign_btcpay_webhooks_are_refused_and_signal_nothing(
    http: httpx.AsyncClient, btcpay: FakeBTCPay, temporal: Client
) -> None:
    account = await register_and_login(http)
    payment = (await checkout(http, account["access_token"], PREMIUM_IN_CRYPTO))["payment"]
    invoice_id = payment["gateway_id"]
    body, headers = btcpay.webhook("InvoiceSettled", invoice_id)
    forgeries = {
        "wrong secret": btcpay.webhook("InvoiceSettled", invoice_id, secret="not-the-secret"),
        "body altered after signing": (body.replace(b"InvoiceSettled", b"InvoiceSettled "), headers),
        "no signature": (body, {"Content-Type": "application/json"}),
        "timestamp older than the tolerance": btcpay.webhook(
            "InvoiceSettled", invoice_id, timestamp=int(time.time()) - 301
        ),
        "another store": btcpay.webhook("InvoiceSettled", invoice_id, storeId="SomebodyElse"),
    }
    await assert_forgeries_refused(
        http,
        temporal,
        account["access_token"],
        payment["id"],
        lambda delivery: deliver(http, delivery),
        forgeries,
        "BTCPay webhook refused",
    )


async def test_a_crypto_refund_is_a_pull_payment_and_takes_the_tier_back(
    http: httpx.AsyncClient, btcpay: FakeBTCPay
) -> None:
    account = await register_and_login(http)
    token = account["access_token"]
    payment = (await checkout(http, token, PREMIUM_IN_CRYPTO))["payment"]
    btcpay.settle(payment["gateway_id"])
    assert (await deliver(http, btcpay.webhook("InvoiceSettled", payment["gateway_id"]))).status_code == 200
    await wait_for_status(http, token, payment["id"], "COMPLETED")

    refunded = await http.post(f"/api/payments/{payment['id']}/refund", headers=bearer(token))
    assert refunded.status_code == 200 and refunded.json()["status"] == "REFUNDED", refunded.text
    assert [pull["name"] for pull in btcpay.pull_payments] == [f"Refund {payment['id']}"]
    assert await tier_of(http, token) == "STANDARD"


async def test_an_unpaid_invoice_expires_failed_and_is_marked_invalid(
    btcpay_settings: Settings, engine: AsyncEngine, btcpay: FakeBTCPay
) -> None:
    progress = await run_unpaid_checkout(btcpay_settings, engine, PaymentGateway.CRYPTO_BTCPAY)
    assert progress.status == PaymentStatus.FAILED and progress.gateway_id is not None
    assert btcpay.invoices[progress.gateway_id]["status"] == "Invalid"


async def test_an_invoice_still_confirming_at_expiry_is_watched_until_it_settles(
    btcpay_settings: Settings, engine: AsyncEngine, btcpay: FakeBTCPay
) -> None:
    """The buyer paid just before the hour was up; the transaction confirms after it. Not cancelled, not lost."""
    async with time_skipping_checkout(btcpay_settings, engine, PaymentGateway.CRYPTO_BTCPAY) as (env, handle):
        invoice = await eventually(lambda: first_invoice(btcpay), what="the invoice")
        invoice["status"] = "Processing"
        await env.sleep(timedelta(minutes=btcpay_settings.btcpay_expiry_minutes + 30))
        assert (await handle.query(CheckoutWorkflow.progress)).status == PaymentStatus.PENDING
        btcpay.settle(invoice["id"])
        progress = await handle.result()  # the next hourly poll finds it settled
    assert progress.status == PaymentStatus.COMPLETED
    assert any(entry.what.startswith("cancel at expiry: invoice Processing") for entry in progress.history)
    assert invoice["status"] == "Settled"


async def first_invoice(btcpay: FakeBTCPay) -> dict[str, Any] | None:
    return next(iter(btcpay.invoices.values()), None)
