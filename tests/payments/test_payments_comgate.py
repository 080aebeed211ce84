"""Comgate checkout end to end: API -> CheckoutWorkflow -> Comgate's form-encoded API over httpx -> a local
Comgate server (tests/fakes/comgate_server.py). A push notification only prompts a status re-read."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fakes.comgate_server import MERCHANT, SECRET, FakeComgate
from helpers import bearer, eventually, register_and_login
from payments_support import (
    assert_forgeries_refused,
    checkout,
    payment_stack,
    payment_status,
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
from workflows.checkout import CheckoutWorkflow, workflow_id

STANDARD_BY_COMGATE = {"tier": "STANDARD", "gateway": "COMGATE"}
PREMIUM_BY_COMGATE = {"tier": "PREMIUM", "gateway": "COMGATE"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def comgate() -> AsyncIterator[tuple[FakeComgate, str]]:
    fake = FakeComgate()
    async with serve_http(fake.app) as url:
        yield fake, url


@pytest.fixture
def comgate_settings(settings: Settings, comgate: tuple[FakeComgate, str]) -> Settings:
    return with_gateway(
        settings, comgate_api_base=comgate[1], comgate_merchant=MERCHANT, comgate_secret=SecretStr(SECRET)
    )


@pytest.fixture
async def http(comgate_settings: Settings, temporal: Client, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with payment_stack(comgate_settings, temporal, engine) as client:
        yield client


async def push(http: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await http.post("/api/payments/webhooks/COMGATE", content=body, headers=FORM)


async def test_a_comgate_payment_in_hellers_completes_once_after_repeated_pushes(
    http: httpx.AsyncClient, comgate: tuple[FakeComgate, str], comgate_settings: Settings, temporal: Client
) -> None:
    fake, _ = comgate
    account = await register_and_login(http)
    token = account["access_token"]
    payment = (await checkout(http, token, PREMIUM_BY_COMGATE))["payment"]
    at_comgate = fake.payments[payment["gateway_id"]]
    assert (at_comgate["price"], at_comgate["curr"], at_comgate["refId"]) == ("248900", "CZK", payment["id"])
    assert at_comgate["prepareOnly"] == "true"
    assert payment["next_action"]["redirect_url"].endswith(f"id={payment['gateway_id']}")

    fake.pay(payment["gateway_id"])
    paid = fake.push(payment["gateway_id"])
    for _ in range(3):
        response = await push(http, paid)
        assert response.status_code == 200 and response.text == "code=0&message=OK"
    await wait_for_status(http, token, payment["id"], "COMPLETED")
    assert await tier_of(http, token) == "PREMIUM"
    activities, signals = await workflow_calls(temporal, payment["id"])
    assert signals == 3 and activities["gateway_status"] == 1  # one push id, one re-read
    assert activities["complete_payment"] == 1 and len(receipts(comgate_settings, payment["id"])) == 1


async def test_a_push_claiming_payment_is_not_believed_until_comgate_says_so(
    http: httpx.AsyncClient, comgate: tuple[FakeComgate, str], temporal: Client
) -> None:
    fake, _ = comgate
    account = await register_and_login(http)
    payment = (await checkout(http, account["access_token"], STANDARD_BY_COMGATE))["payment"]
    lie = fake.push(payment["gateway_id"], status="PAID")  # genuine secret, but Comgate's API says PENDING
    assert (await push(http, lie)).status_code == 200
    handle = temporal.get_workflow_handle_for(CheckoutWorkflow.run, workflow_id(uuid.UUID(payment["id"])))

    async def reread() -> bool:
        return (await workflow_calls(temporal, payment["id"]))[0]["gateway_status"] == 1

    await eventually(reread, what="the status re-read")
    assert (await handle.query(CheckoutWorkflow.progress)).status == PaymentStatus.PENDING
    assert await payment_status(http, account["access_token"], payment["id"]) == "PENDING"


async def test_a_push_with_a_wrong_secret_or_merchant_is_refused_and_signals_nothing(
    http: httpx.AsyncClient, comgate: tuple[FakeComgate, str], temporal: Client
) -> None:
    fake, _ = comgate
    account = await register_and_login(http)
    payment = (await checkout(http, account["access_token"], STANDARD_BY_COMGATE))["payment"]
    fake.pay(payment["gateway_id"])
    forgeries = {
        "wrong secret": fake.push(payment["gateway_id"], secret="guessed"),
        "wrong merchant": fake.push(payment["gateway_id"], merchant="999999"),
        "secret a prefix of ours": fake.push(payment["gateway_id"], secret=SECRET[:-1]),
        "no secret": b"merchant=123456&transId=" + payment["gateway_id"].encode(),
        "malformed": b"%%%",
    }
    await assert_forgeries_refused(
        http,
        temporal,
        account["access_token"],
        payment["id"],
        lambda body: push(http, body),
        forgeries,
        "Comgate push refused",
    )


async def test_a_comgate_refund_returns_the_hellers_and_takes_the_tier_back(
    http: httpx.AsyncClient, comgate: tuple[FakeComgate, str]
) -> None:
    fake, _ = comgate
    account = await register_and_login(http)
    token = account["access_token"]
    payment = (await checkout(http, token, PREMIUM_BY_COMGATE))["payment"]
    fake.pay(payment["gateway_id"])
    assert (await push(http, fake.push(payment["gateway_id"]))).status_code == 200
    await wait_for_status(http, token, payment["id"], "COMPLETED")
    refunded = await http.post(f"/api/payments/{payment['id']}/refund", headers=bearer(token))
    assert refunded.status_code == 200 and refunded.json()["status"] == "REFUNDED", refunded.text
    assert [(r["transId"], r["amount"], r["curr"]) for r in fake.refunds] == [(payment["gateway_id"], "248900", "CZK")]
    assert await tier_of(http, token) == "STANDARD"


async def test_an_unpaid_comgate_payment_expires_failed_and_is_cancelled(
    comgate_settings: Settings, engine: AsyncEngine, comgate: tuple[FakeComgate, str]
) -> None:
    fake, _ = comgate
    progress = await run_unpaid_checkout(comgate_settings, engine, PaymentGateway.COMGATE)
    assert progress.status == PaymentStatus.FAILED and progress.gateway_id is not None
    assert fake.payments[progress.gateway_id]["status"] == "CANCELLED"


async def paid_premium(http: httpx.AsyncClient, fake: FakeComgate, token: str) -> dict[str, Any]:
    """A PREMIUM payment by Comgate, paid and COMPLETED."""
    payment = (await checkout(http, token, PREMIUM_BY_COMGATE))["payment"]
    fake.pay(payment["gateway_id"])
    assert (await push(http, fake.push(payment["gateway_id"]))).status_code == 200
    await wait_for_status(http, token, payment["id"], "COMPLETED")
    return payment


async def test_a_refund_comgate_refuses_is_a_bad_gateway_and_takes_nothing_back(
    http: httpx.AsyncClient, comgate: tuple[FakeComgate, str]
) -> None:
    fake, _ = comgate
    token = (await register_and_login(http))["access_token"]
    payment = await paid_premium(http, fake, token)
    fake.payments[payment["gateway_id"]]["status"] = "CANCELLED"  # Comgate will not refund it now
    refused = await http.post(f"/api/payments/{payment['id']}/refund", headers=bearer(token))
    assert refused.status_code == 502, refused.text
    assert "COMGATE refused the refund" in refused.json()["error"] and "Refund refused" in refused.json()["error"]
    assert await payment_status(http, token, payment["id"]) == "COMPLETED"
    assert await tier_of(http, token) == "PREMIUM" and fake.refunds == []


async def test_refunds_turned_off_send_the_customer_to_support(
    comgate_settings: Settings, temporal: Client, engine: AsyncEngine, comgate: tuple[FakeComgate, str]
) -> None:
    by_support = comgate_settings.model_copy(update={"payment_refund_window_days": 0})
    async with payment_stack(by_support, temporal, engine) as http:
        token = (await register_and_login(http))["access_token"]
        payment = await paid_premium(http, comgate[0], token)
        refused = await http.post(f"/api/payments/{payment['id']}/refund", headers=bearer(token))
        assert refused.status_code == 409, refused.text
        assert "refunds are handled by support" in refused.json()["error"]
        assert await payment_status(http, token, payment["id"]) == "COMPLETED"


async def test_a_checkout_comgate_refuses_is_a_bad_gateway_and_the_payment_fails(
    comgate_settings: Settings, temporal: Client, engine: AsyncEngine
) -> None:
    unknown_shop = comgate_settings.model_copy(update={"comgate_secret": SecretStr("not-our-secret")})
    async with payment_stack(unknown_shop, temporal, engine) as http:
        token = (await register_and_login(http))["access_token"]
        headers = {**bearer(token), "Idempotency-Key": uuid.uuid4().hex}
        refused = await http.post("/api/payments/checkout", json=PREMIUM_BY_COMGATE, headers=headers)
        assert refused.status_code == 502, refused.text
        assert "COMGATE refused the payment" in refused.json()["error"] and "Unknown e-shop" in refused.json()["error"]
        [payment] = (await http.get("/api/payments", headers=bearer(token))).json()
        await wait_for_status(http, token, payment["id"], "FAILED")


async def test_a_slow_gateway_gets_a_202_with_the_payment_and_its_next_action_follows(
    comgate_settings: Settings, temporal: Client, engine: AsyncEngine
) -> None:
    impatient = comgate_settings.model_copy(update={"payment_checkout_wait_seconds": 0.001})
    async with payment_stack(impatient, temporal, engine) as http:
        token = (await register_and_login(http))["access_token"]
        accepted = await checkout(http, token, PREMIUM_BY_COMGATE, expect=202)
        assert accepted["payment"]["status"] == "PENDING" and accepted["payment"]["next_action"] is None
        assert "COMGATE is slow to answer" in accepted["message"]

        async def next_action() -> dict[str, Any] | None:
            response = await http.get(f"/api/payments/{accepted['payment']['id']}", headers=bearer(token))
            action: dict[str, Any] | None = response.json()["next_action"]
            return action

        action = await eventually(next_action, what="the workflow to store the next action")
        assert action["kind"] == "redirect" and action["redirect_url"].startswith("https://payments.comgate.cz/")
