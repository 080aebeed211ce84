"""Comgate checkout end to end: API -> CheckoutWorkflow -> Comgate's form-encoded API over httpx -> a local
Comgate server (tests/fakes/comgate_server.py). A push notification only prompts a status re-read."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

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
