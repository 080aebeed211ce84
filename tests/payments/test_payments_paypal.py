"""PayPal checkout end to end: API -> CheckoutWorkflow -> Orders v2 over httpx -> a local PayPal server
(tests/fakes/paypal_server.py), and PayPal's signed webhooks, verified through its verify-webhook-signature."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fakes.paypal_server import CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID, FakePayPal
from helpers import bearer, register_and_login
from payments_support import (
    assert_forgeries_refused,
    checkout,
    payment_stack,
    post_webhook,
    receipts,
    run_unpaid_checkout,
    serve_http,
    tier_of,
    wait_for_status,
    with_gateway,
    workflow_calls,
)
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from models.enums import PaymentGateway, PaymentStatus
from settings import Settings

PREMIUM_BY_PAYPAL = {"tier": "PREMIUM", "gateway": "PAYPAL"}


@pytest.fixture
async def paypal() -> AsyncIterator[tuple[FakePayPal, str]]:
    fake = FakePayPal()
    async with serve_http(fake.app) as url:
        yield fake, url


@pytest.fixture
def paypal_settings(settings: Settings, paypal: tuple[FakePayPal, str]) -> Settings:
    return with_gateway(
        settings,
        paypal_api_base=paypal[1],
        paypal_client_id=CLIENT_ID,
        paypal_client_secret=SecretStr(CLIENT_SECRET),
        paypal_webhook_id=WEBHOOK_ID,
    )


@pytest.fixture
async def http(paypal_settings: Settings, temporal: Client, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with payment_stack(paypal_settings, temporal, engine) as client:
        yield client


async def deliver(http: httpx.AsyncClient, delivery: tuple[bytes, dict[str, str]]) -> httpx.Response:
    return await post_webhook(http, PaymentGateway.PAYPAL, delivery)


async def paid_order(http: httpx.AsyncClient, fake: FakePayPal, token: str) -> tuple[dict[str, Any], str]:
    """Checkout, the buyer approves at PayPal, PayPal reports it; returns the payment and its capture id."""
    payment = (await checkout(http, token, PREMIUM_BY_PAYPAL))["payment"]
    fake.approve(payment["gateway_id"])
    approved = fake.webhook("CHECKOUT.ORDER.APPROVED", fake.order_view(payment["gateway_id"]))
    assert (await deliver(http, approved)).status_code == 200
    await wait_for_status(http, token, payment["id"], "COMPLETED")
    return payment, fake.orders[payment["gateway_id"]]["capture_id"]


async def test_paypal_order_is_approved_captured_and_completes_once(
    http: httpx.AsyncClient, paypal: tuple[FakePayPal, str], paypal_settings: Settings, temporal: Client
) -> None:
    fake, _ = paypal
    account = await register_and_login(http)
    token = account["access_token"]
    payment = (await checkout(http, token, PREMIUM_BY_PAYPAL))["payment"]
    assert payment["next_action"]["kind"] == "redirect"
    assert payment["next_action"]["redirect_url"].endswith(f"checkoutnow?token={payment['gateway_id']}")
    unit = fake.orders[payment["gateway_id"]]["purchase_units"][0]
    assert unit["amount"] == {"currency_code": "EUR", "value": "99.00"} and unit["custom_id"] == payment["id"]

    fake.approve(payment["gateway_id"])
    approved = fake.webhook("CHECKOUT.ORDER.APPROVED", fake.order_view(payment["gateway_id"]))
    # each event three times, the capture's report interleaved with the approval it follows
    assert (await deliver(http, approved)).status_code == 200
    await wait_for_status(http, token, payment["id"], "COMPLETED")
    capture = fake.captures[fake.orders[payment["gateway_id"]]["capture_id"]]
    captured = fake.webhook("PAYMENT.CAPTURE.COMPLETED", capture)
    for delivery in (captured, approved, captured, approved, captured):
        assert (await deliver(http, delivery)).status_code == 200

    assert await tier_of(http, token) == "PREMIUM"
    activities, signals = await workflow_calls(temporal, payment["id"])
    assert signals == 6
    assert activities["capture_at_gateway"] == 1 and activities["complete_payment"] == 1
    assert activities["send_user_email"] == 1 and len(receipts(paypal_settings, payment["id"])) == 1


async def test_forged_or_altered_paypal_webhooks_are_refused_and_signal_nothing(
    http: httpx.AsyncClient, paypal: tuple[FakePayPal, str], temporal: Client
) -> None:
    fake, _ = paypal
    account = await register_and_login(http)
    payment = (await checkout(http, account["access_token"], PREMIUM_BY_PAYPAL))["payment"]
    fake.approve(payment["gateway_id"])
    body, headers = fake.webhook("CHECKOUT.ORDER.APPROVED", fake.order_view(payment["gateway_id"]))
    forgeries = {
        "altered body": (body.replace(b"APPROVED", b"COMPLETED", 1), headers),
        "forged signature": (body, {**headers, "PAYPAL-TRANSMISSION-SIG": "Zm9yZ2Vk"}),
        "replayed under another transmission id": (body, {**headers, "PAYPAL-TRANSMISSION-ID": str(uuid.uuid4())}),
        "unsigned": (body, {"Content-Type": "application/json"}),
        "malformed": (b"{not json", headers),
    }
    await assert_forgeries_refused(
        http,
        temporal,
        account["access_token"],
        payment["id"],
        lambda delivery: deliver(http, delivery),
        forgeries,
        "PayPal webhook refused",
    )


async def test_customer_refund_at_paypal_takes_the_tier_back(
    http: httpx.AsyncClient, paypal: tuple[FakePayPal, str]
) -> None:
    fake, _ = paypal
    account = await register_and_login(http)
    token = account["access_token"]
    payment, capture_id = await paid_order(http, fake, token)
    refunded = await http.post(f"/api/payments/{payment['id']}/refund", headers=bearer(token))
    assert refunded.status_code == 200 and refunded.json()["status"] == "REFUNDED", refunded.text
    assert fake.captures[capture_id]["status"] == "REFUNDED" and len(fake.refunds) == 1
    assert await tier_of(http, token) == "STANDARD"


async def test_a_refund_made_in_the_paypal_dashboard_takes_the_tier_back(
    http: httpx.AsyncClient, paypal: tuple[FakePayPal, str]
) -> None:
    fake, _ = paypal
    account = await register_and_login(http)
    token = account["access_token"]
    payment, capture_id = await paid_order(http, fake, token)
    fake.captures[capture_id]["status"] = "REFUNDED"
    refund = {"id": "DASHBOARD1", "status": "COMPLETED", "custom_id": payment["id"]}
    assert (await deliver(http, fake.webhook("PAYMENT.CAPTURE.REFUNDED", refund))).status_code == 200
    await wait_for_status(http, token, payment["id"], "REFUNDED")
    assert await tier_of(http, token) == "STANDARD"


async def test_an_unapproved_paypal_order_expires_failed(paypal_settings: Settings, engine: AsyncEngine) -> None:
    progress = await run_unpaid_checkout(paypal_settings, engine, PaymentGateway.PAYPAL)
    assert progress.status == PaymentStatus.FAILED
    assert any("left to lapse" in entry.what for entry in progress.history)
