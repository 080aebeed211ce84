"""Stripe checkout end to end: API -> CheckoutWorkflow -> the real `stripe` client -> localstripe on loopback,
and localstripe's signed webhooks back into the API.

Where localstripe lacks an event Stripe sends (`charge.refunded`, `payment_intent.canceled`) or a
redelivery is needed, the test signs the payload itself with the webhook secret, exactly as Stripe does
(HMAC-SHA256 of "<timestamp>.<body>"), using the objects localstripe holds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from fakes.stripe_emulator import SECRET_KEY, running_localstripe
from helpers import bearer, eventually, register_and_login
from payments_support import (
    PREMIUM_BY_STRIPE,
    WEBHOOK_SECRET,
    checkout,
    pay,
    payment_stack,
    payment_status,
    receipts,
    register_webhook,
    run_unpaid_checkout,
    serve_http,
    signed_stripe_event,
    tier_of,
    wait_for_status,
    with_gateway,
    workflow_calls,
)
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from api.app import create_app
from models import search_attributes
from models.enums import PaymentGateway, PaymentStatus
from settings import Settings
from worker import build_worker
from workflows.checkout import CheckoutWorkflow, workflow_id


@pytest.fixture(scope="module")
def localstripe_url() -> Iterator[str]:
    with running_localstripe() as url:
        yield url


@pytest.fixture
def stripe_settings(settings: Settings, localstripe_url: str) -> Settings:
    """Stripe configured against localstripe; polling slow enough that webhooks are what settles payments."""
    return with_gateway(
        settings,
        stripe_secret_key=SecretStr(SECRET_KEY),
        stripe_webhook_secret=SecretStr(WEBHOOK_SECRET),
        stripe_api_base=localstripe_url,
    )


@pytest.fixture
async def api_url(stripe_settings: Settings, temporal: Client) -> AsyncIterator[str]:
    async with serve_http(create_app(stripe_settings, temporal=temporal)) as url:
        yield url


@pytest.fixture
async def http(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
        yield client


@pytest.fixture
async def stripe_worker(temporal: Client, stripe_settings: Settings, engine: AsyncEngine) -> AsyncIterator[None]:
    async with build_worker(temporal, stripe_settings, engine):
        yield


@pytest.fixture
def customer(localstripe_url: str) -> stripe.StripeClient:
    """What Stripe.js does in the browser, done with the real client against localstripe."""
    return stripe.StripeClient(SECRET_KEY, base_addresses={"api": localstripe_url}, http_client=stripe.HTTPXClient())


async def stripe_events(localstripe_url: str, event_type: str, intent_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(auth=(SECRET_KEY, "")) as client:
        listed = (await client.get(f"{localstripe_url}/v1/events", params={"type": event_type})).json()["data"]
    return [event for event in listed if event["data"]["object"].get("id") == intent_id]


async def deliver(http: httpx.AsyncClient, event: dict[str, Any], **signing: Any) -> httpx.Response:
    body, headers = signed_stripe_event(event, signing.pop("secret", WEBHOOK_SECRET), **signing)
    return await http.post("/api/payments/webhooks/STRIPE", content=body, headers=headers)


async def test_stripe_payment_completes_by_its_signed_webhook_unlocks_the_tier_and_emails_one_receipt(
    http: httpx.AsyncClient,
    api_url: str,
    localstripe_url: str,
    stripe_worker: None,
    customer: stripe.StripeClient,
    stripe_settings: Settings,
    temporal: Client,
) -> None:
    account = await register_and_login(http)
    created = await checkout(http, account["access_token"], PREMIUM_BY_STRIPE)
    payment = created["payment"]
    assert payment["status"] == "PENDING"
    assert (payment["amount_minor"], payment["currency"]) == (9900, "EUR")  # from the catalogue
    action = payment["next_action"]
    assert action["kind"] == "stripe_client_secret" and action["client_secret"].startswith(payment["gateway_id"])
    intent = await customer.v1.payment_intents.retrieve_async(payment["gateway_id"])
    assert (intent.amount, intent.currency, intent.metadata["payment_id"]) == (9900, "eur", payment["id"])

    register_webhook(localstripe_url, api_url)
    await pay(customer, action["client_secret"])
    await wait_for_status(http, account["access_token"], payment["id"], "COMPLETED")

    assert await tier_of(http, account["access_token"]) == "PREMIUM"

    async def receipt_sent() -> bool:  # the workflow emails it just after the row reads COMPLETED
        return bool(receipts(stripe_settings, payment["id"]))

    await eventually(receipt_sent, what="the receipt in the outbox")
    assert [path.name for path in receipts(stripe_settings, payment["id"])] == [f"payment-{payment['id']}-receipt.eml"]
    receipt = receipts(stripe_settings, payment["id"])[0].read_text()
    assert "99.00 EUR" in receipt and account["email"] in receipt
    handle = temporal.get_workflow_handle_for(CheckoutWorkflow.run, workflow_id(uuid.UUID(payment["id"])))
    progress = await handle.query(CheckoutWorkflow.progress)
    assert progress.status == PaymentStatus.COMPLETED and progress.refundable_until is not None
    assert any("payment_intent.succeeded" in entry.what for entry in progress.history)
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(search_attributes.RESOURCE_ID) == payment["id"]
    assert attributes.get(search_attributes.USER_ID) == account["user"]["id"]
    assert attributes.get(search_attributes.GATEWAY) == "STRIPE"


async def test_a_repeated_checkout_with_the_same_idempotency_key_returns_the_same_payment(
    http: httpx.AsyncClient, stripe_worker: None, temporal: Client
) -> None:
    account = await register_and_login(http)
    first = await checkout(http, account["access_token"], PREMIUM_BY_STRIPE, key="order-1")
    again = await checkout(http, account["access_token"], PREMIUM_BY_STRIPE, key="order-1")
    assert again["payment"]["id"] == first["payment"]["id"]
    assert again["payment"]["next_action"] == first["payment"]["next_action"]
    other = await checkout(http, account["access_token"], PREMIUM_BY_STRIPE, key="order-2")
    assert other["payment"]["id"] != first["payment"]["id"]
    listed = (await http.get("/api/payments", headers=bearer(account["access_token"]))).json()
    assert sorted(p["id"] for p in listed) == sorted([first["payment"]["id"], other["payment"]["id"]])
    activities, _ = await workflow_calls(temporal, first["payment"]["id"])
    assert activities["create_at_gateway"] == 1
    reused = await http.post(
        "/api/payments/checkout",
        json={"tier": "STANDARD", "gateway": "STRIPE"},
        headers={**bearer(account["access_token"]), "Idempotency-Key": "order-1"},
    )
    assert reused.status_code == 422
    assert reused.json()["error"] == "This Idempotency-Key was used with a different request; send a new key"


async def test_webhooks_delivered_three_times_and_out_of_order_complete_the_payment_once(
    http: httpx.AsyncClient,
    localstripe_url: str,
    stripe_worker: None,
    customer: stripe.StripeClient,
    stripe_settings: Settings,
    temporal: Client,
) -> None:
    """No webhook registered at localstripe: its real signed `succeeded` event is delivered here by hand,
    three times, interleaved with an earlier declined attempt delivered late."""
    account = await register_and_login(http)
    payment = (await checkout(http, account["access_token"], PREMIUM_BY_STRIPE))["payment"]
    intent_id = await pay(customer, payment["next_action"]["client_secret"])
    [succeeded] = await eventually(
        lambda: stripe_events(localstripe_url, "payment_intent.succeeded", intent_id), what="the succeeded event"
    )
    declined_earlier = {
        **succeeded,
        "id": f"evt_declined_{uuid.uuid4().hex[:10]}",
        "type": "payment_intent.payment_failed",
        "created": succeeded["created"] - 60,
    }
    for event in (succeeded, declined_earlier, succeeded, declined_earlier, succeeded):
        response = await deliver(http, event)
        assert response.status_code == 200, response.text

    await wait_for_status(http, account["access_token"], payment["id"], "COMPLETED")
    assert await tier_of(http, account["access_token"]) == "PREMIUM"
    activities, signals = await workflow_calls(temporal, payment["id"])
    assert signals == 5
    assert activities["complete_payment"] == 1
    assert activities["send_user_email"] == 1
    assert len(receipts(stripe_settings, payment["id"])) == 1
    handle = temporal.get_workflow_handle_for(CheckoutWorkflow.run, workflow_id(uuid.UUID(payment["id"])))
    history = [entry.what for entry in (await handle.query(CheckoutWorkflow.progress)).history]
    for event_id in (succeeded["id"], declined_earlier["id"]):  # each event id counted once, repeats ignored
        assert len([what for what in history if event_id in what]) == 1, history


async def test_worker_stopped_mid_checkout_and_started_again_completes_once(
    http: httpx.AsyncClient,
    api_url: str,
    localstripe_url: str,
    customer: stripe.StripeClient,
    stripe_settings: Settings,
    temporal: Client,
    engine: AsyncEngine,
) -> None:
    account = await register_and_login(http)
    async with build_worker(temporal, stripe_settings, engine):
        payment = (await checkout(http, account["access_token"], PREMIUM_BY_STRIPE))["payment"]
    # the worker is gone: the customer pays, and Stripe's webhook reaches the API, which hands it to Temporal
    register_webhook(localstripe_url, api_url)
    intent_id = await pay(customer, payment["next_action"]["client_secret"])
    [succeeded] = await eventually(
        lambda: stripe_events(localstripe_url, "payment_intent.succeeded", intent_id), what="the succeeded event"
    )

    async def signalled() -> bool:
        return (await workflow_calls(temporal, payment["id"]))[1] >= 1

    await eventually(signalled, what="localstripe's webhook to be signalled")
    assert await payment_status(http, account["access_token"], payment["id"]) == "PENDING"
    assert (await deliver(http, succeeded)).status_code == 200  # and once more for good measure

    async with build_worker(temporal, stripe_settings, engine):
        await wait_for_status(http, account["access_token"], payment["id"], "COMPLETED")

        # The receipt follows COMPLETED: stopping the worker before it is out would cancel it
        async def receipt_out() -> list[Path] | None:
            return receipts(stripe_settings, payment["id"]) or None

        await eventually(receipt_out, what="the receipt")
    assert await tier_of(http, account["access_token"]) == "PREMIUM"
    activities, _ = await workflow_calls(temporal, payment["id"])
    assert activities["complete_payment"] == 1 and activities["send_user_email"] == 1
    assert len(receipts(stripe_settings, payment["id"])) == 1


def _altered(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body, headers = signed_stripe_event(event, WEBHOOK_SECRET)
    return body.replace(b'"amount": 9900', b'"amount": 1'), headers


def _forgeries(event: dict[str, Any]) -> dict[str, tuple[bytes, dict[str, str]]]:
    signed = signed_stripe_event
    return {
        "wrong secret": signed(event, "whsec_somebody_else"),
        "timestamp older than the tolerance": signed(event, WEBHOOK_SECRET, timestamp=int(time.time()) - 301),
        # 300 s is the tolerance; 30 s past it, since the clock moves on while the forgeries before this one are sent
        "timestamp newer than the tolerance": signed(event, WEBHOOK_SECRET, timestamp=int(time.time()) + 330),
        "timestamp an hour ahead": signed(event, WEBHOOK_SECRET, timestamp=int(time.time()) + 3600),
        "body altered after signing": _altered(event),
        "no signature": (signed(event, WEBHOOK_SECRET)[0], {"Content-Type": "application/json"}),
        "garbage signature": (signed(event, WEBHOOK_SECRET)[0], {"Stripe-Signature": "t=abc,v1=zzz"}),
    }


async def test_forged_stale_or_altered_webhooks_are_refused_and_signal_nothing(
    http: httpx.AsyncClient,
    localstripe_url: str,
    stripe_worker: None,
    customer: stripe.StripeClient,
    temporal: Client,
) -> None:
    account = await register_and_login(http)
    payment = (await checkout(http, account["access_token"], PREMIUM_BY_STRIPE))["payment"]
    intent_id = await pay(customer, payment["next_action"]["client_secret"])
    [succeeded] = await eventually(
        lambda: stripe_events(localstripe_url, "payment_intent.succeeded", intent_id), what="the succeeded event"
    )
    for name, (body, headers) in _forgeries(succeeded).items():
        response = await http.post("/api/payments/webhooks/STRIPE", content=body, headers=headers)
        assert response.status_code == 400, (name, response.text)
        assert "Stripe webhook refused" in response.json()["error"], name
    malformed = b"{not json"
    response = await http.post(
        "/api/payments/webhooks/STRIPE", content=malformed, headers=signed_stripe_event({}, WEBHOOK_SECRET)[1]
    )
    assert response.status_code == 400

    _, signals = await workflow_calls(temporal, payment["id"])
    assert signals == 0
    assert await payment_status(http, account["access_token"], payment["id"]) == "PENDING"
    # the genuine article still works afterwards
    assert (await deliver(http, succeeded)).status_code == 200
    await wait_for_status(http, account["access_token"], payment["id"], "COMPLETED")


def _succeeded(payment: dict[str, Any], **changed: Any) -> dict[str, Any]:
    """A payment_intent.succeeded Stripe could sign for this payment, with `changed` fields of the intent."""
    intent = {
        "id": payment["gateway_id"],
        "object": "payment_intent",
        "amount": payment["amount_minor"],
        "currency": payment["currency"].lower(),
        "status": "succeeded",
        "metadata": {"payment_id": payment["id"]},
        **changed,
    }
    event_id = f"evt_{uuid.uuid4().hex[:16]}"
    return {"id": event_id, "object": "event", "type": "payment_intent.succeeded", "data": {"object": intent}}


async def test_a_signed_webhook_for_another_intent_amount_or_currency_completes_nothing(
    http: httpx.AsyncClient, stripe_worker: None, temporal: Client
) -> None:
    """A genuinely signed event naming our payment in its metadata, but for another PaymentIntent or amount 1
    against the price, does not complete the payment: each is acknowledged (200), logged, counted and ignored;
    the payment stays PENDING until the event that matches it."""
    account = await register_and_login(http)
    payment = (await checkout(http, account["access_token"], {"tier": "STANDARD", "gateway": "STRIPE"}))["payment"]
    assert (payment["amount_minor"], payment["currency"]) == (2900, "EUR")
    counted = REGISTRY.get_sample_value("statex_webhooks_mismatched_total", {"gateway": "STRIPE"}) or 0.0
    for mismatched in (
        _succeeded(payment, id="pi_somebody_elses_intent"),
        _succeeded(payment, amount=1),
        _succeeded(payment, currency="usd"),
    ):
        response = await deliver(http, mismatched)
        assert response.status_code == 200, response.text
        assert response.json()["outcome"].startswith("ignored: "), response.text
    assert REGISTRY.get_sample_value("statex_webhooks_mismatched_total", {"gateway": "STRIPE"}) == counted + 3
    _, signals = await workflow_calls(temporal, payment["id"])
    assert signals == 0
    assert await payment_status(http, account["access_token"], payment["id"]) == "PENDING"
    # the event that matches the payment in every respect still completes it
    assert (await deliver(http, _succeeded(payment))).json()["outcome"] == "signalled"
    await wait_for_status(http, account["access_token"], payment["id"], "COMPLETED")


async def test_a_webhook_for_an_unknown_payment_is_acknowledged_and_ignored(http: httpx.AsyncClient) -> None:
    event = {
        "id": "evt_unknown",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {
            "object": {"id": "pi_nobody", "object": "payment_intent", "metadata": {"payment_id": str(uuid.uuid4())}}
        },
    }
    response = await deliver(http, event)
    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored: unknown payment"


async def test_customer_refund_returns_the_money_and_takes_the_tier_back(
    http: httpx.AsyncClient,
    localstripe_url: str,
    stripe_worker: None,
    customer: stripe.StripeClient,
    stripe_settings: Settings,
) -> None:
    account = await register_and_login(http)
    token = account["access_token"]
    payment = (await checkout(http, token, PREMIUM_BY_STRIPE))["payment"]
    intent_id = await pay(customer, payment["next_action"]["client_secret"])
    [succeeded] = await eventually(
        lambda: stripe_events(localstripe_url, "payment_intent.succeeded", intent_id), what="the succeeded event"
    )
    await deliver(http, succeeded)
    await wait_for_status(http, token, payment["id"], "COMPLETED")

    refunded = await http.post(f"/api/payments/{payment['id']}/refund", headers=bearer(token))
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["status"] == "REFUNDED" and refunded.json()["refunded_at"]
    assert await tier_of(http, token) == "STANDARD"
    at_stripe = await customer.v1.refunds.list_async({"payment_intent": intent_id})
    assert [refund.amount for refund in at_stripe.data] == [9900]
    again = await http.post(f"/api/payments/{payment['id']}/refund", headers=bearer(token))
    assert again.status_code == 200 and again.json()["status"] == "REFUNDED"
    assert len((await customer.v1.refunds.list_async({"payment_intent": intent_id})).data) == 1
    assert len(receipts(stripe_settings, payment["id"])) == 2  # the receipt and the refund notice


async def test_a_refund_made_in_the_stripe_dashboard_takes_the_tier_back(
    http: httpx.AsyncClient, localstripe_url: str, stripe_worker: None, customer: stripe.StripeClient
) -> None:
    account = await register_and_login(http)
    token = account["access_token"]
    standard = (await checkout(http, token, {"tier": "STANDARD", "gateway": "STRIPE"}))["payment"]
    premium = (await checkout(http, token, PREMIUM_BY_STRIPE))["payment"]
    for payment in (standard, premium):
        intent_id = await pay(customer, payment["next_action"]["client_secret"])
        [succeeded] = await eventually(
            lambda i=intent_id: stripe_events(localstripe_url, "payment_intent.succeeded", i), what="succeeded"
        )
        await deliver(http, succeeded)
        await wait_for_status(http, token, payment["id"], "COMPLETED")
    assert await tier_of(http, token) == "PREMIUM"

    refund = await customer.v1.refunds.create_async({"payment_intent": premium["gateway_id"]})  # the dashboard
    charge = await customer.v1.charges.retrieve_async(refund.charge)  # type: ignore[arg-type]
    charge_refunded = {
        "id": f"evt_refund_{uuid.uuid4().hex[:10]}",
        "object": "event",
        "type": "charge.refunded",
        "created": int(time.time()),
        "data": {"object": charge.to_dict()},
    }
    assert (await deliver(http, charge_refunded)).status_code == 200
    await wait_for_status(http, token, premium["id"], "REFUNDED")
    assert await tier_of(http, token) == "STANDARD"  # still paid for: the STANDARD payment
    assert await payment_status(http, token, standard["id"]) == "COMPLETED"


async def test_without_a_webhook_the_workflow_asks_stripe(
    stripe_settings: Settings, temporal: Client, engine: AsyncEngine, customer: stripe.StripeClient
) -> None:
    polling = stripe_settings.model_copy(update={"payment_poll_seconds": 1})
    async with payment_stack(polling, temporal, engine) as http:
        account = await register_and_login(http)
        payment = (await checkout(http, account["access_token"], PREMIUM_BY_STRIPE))["payment"]
        await pay(customer, payment["next_action"]["client_secret"])  # no webhook registered: none will come
        await wait_for_status(http, account["access_token"], payment["id"], "COMPLETED")
        activities, signals = await workflow_calls(temporal, payment["id"])
    assert signals == 0 and activities["gateway_status"] >= 1


async def test_someone_elses_payment_is_not_found(http: httpx.AsyncClient, stripe_worker: None) -> None:
    owner = await register_and_login(http)
    stranger = await register_and_login(http)
    payment = (await checkout(http, owner["access_token"], PREMIUM_BY_STRIPE))["payment"]
    for method, path in (("GET", f"/api/payments/{payment['id']}"), ("POST", f"/api/payments/{payment['id']}/refund")):
        response = await http.request(method, path, headers=bearer(stranger["access_token"]))
        assert response.status_code == 404, response.text
    assert (await http.get("/api/payments", headers=bearer(stranger["access_token"]))).json() == []
    pending = await http.post(f"/api/payments/{payment['id']}/refund", headers=bearer(owner["access_token"]))
    assert pending.status_code == 409 and "PENDING" in pending.json()["error"]


async def test_an_unpaid_checkout_expires_failed_and_is_cancelled_at_stripe(
    stripe_settings: Settings, engine: AsyncEngine, customer: stripe.StripeClient
) -> None:
    every_five_minutes = stripe_settings.model_copy(update={"payment_poll_seconds": 300})
    progress = await run_unpaid_checkout(every_five_minutes, engine, PaymentGateway.STRIPE)
    assert progress.status == PaymentStatus.FAILED and progress.gateway_id is not None
    intent = await customer.v1.payment_intents.retrieve_async(progress.gateway_id)
    assert intent.status == "canceled"
    polls = [entry for entry in progress.history if entry.what.startswith("ask for the status")]
    assert len(polls) == 60 // 5  # nobody paid: the workflow asked every 5 minutes until the hour was up
