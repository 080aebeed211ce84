"""Signed (or correctly authenticated) webhooks whose content is not what the gateway ever sends: each is a 400
that says why, never a 500. The gateway's signature proves the sender, not the shape of the body."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest
from conftest import AppFactory
from helpers import serve
from payments_support import signed_stripe_event
from pydantic import SecretStr

STRIPE_SECRET = "whsec_test_inputs"
BTCPAY_SECRET = "btcpay-test-inputs"
STORE_ID = "StoreOfInputs"
MERCHANT, COMGATE_SECRET = "123456", "comgate-test-inputs"


@pytest.fixture
async def http(make_app: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(
        stripe_webhook_secret=SecretStr(STRIPE_SECRET),
        btcpay_store_id=STORE_ID,
        btcpay_webhook_secret=SecretStr(BTCPAY_SECRET),
        comgate_merchant=MERCHANT,
        comgate_secret=SecretStr(COMGATE_SECRET),
    )
    async with serve(app) as client:
        yield client


def _refused(response: httpx.Response, why: str) -> None:
    assert response.status_code == 400, response.text
    assert why in response.json()["error"]


STRIPE_EVENTS = {
    "no data": {"id": "evt_1", "type": "payment_intent.succeeded"},
    "data not an object": {"id": "evt_2", "type": "payment_intent.succeeded", "data": "x"},
    "data without object": {"id": "evt_3", "type": "payment_intent.succeeded", "data": {}},
    "object without id": {"id": "evt_4", "type": "payment_intent.succeeded", "data": {"object": {}}},
    "type not a string": {"id": "evt_5", "type": 7, "data": {"object": {"id": "pi_1"}}},
    "intent id not a string": {"id": "evt_6", "type": "payment_intent.succeeded", "data": {"object": {"id": [1]}}},
    "metadata not an object": {
        "id": "evt_7",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_1", "metadata": "x"}},
    },
    "event id too long": {"id": "e" * 300, "type": "payment_intent.succeeded", "data": {"object": {"id": "pi_1"}}},
}


@pytest.mark.parametrize("name", list(STRIPE_EVENTS))
async def test_a_signed_stripe_event_of_the_wrong_shape_is_a_400(http: httpx.AsyncClient, name: str) -> None:
    body, headers = signed_stripe_event(STRIPE_EVENTS[name], STRIPE_SECRET)
    response = await http.post("/api/payments/webhooks/STRIPE", content=body, headers=headers)
    _refused(response, "Stripe webhook refused: malformed event")


def _btcpay(**fields: object) -> tuple[bytes, dict[str, str]]:
    event = {
        "deliveryId": "d1",
        "type": "InvoiceSettled",
        "timestamp": int(time.time()),
        "storeId": STORE_ID,
        "invoiceId": "inv1",
        **fields,
    }
    body = json.dumps(event).encode()  # json.dumps writes NaN and Infinity as Python's json.loads reads them
    signature = "sha256=" + hmac.new(BTCPAY_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "BTCPay-Sig": signature}


@pytest.mark.parametrize("timestamp", [float("nan"), float("inf"), float("-inf")])
async def test_a_btcpay_timestamp_that_is_not_a_number_fails_the_tolerance_check(
    http: httpx.AsyncClient, timestamp: float
) -> None:
    body, headers = _btcpay(timestamp=timestamp)
    assert b"NaN" in body or b"Infinity" in body
    response = await http.post("/api/payments/webhooks/CRYPTO_BTCPAY", content=body, headers=headers)
    _refused(response, "timestamp outside the 300 s tolerance")


@pytest.mark.parametrize(
    "fields",
    [{"type": {"a": 1}}, {"invoiceId": ["x"]}, {"metadata": "x"}, {"deliveryId": "d" * 300}],
    ids=["type an object", "invoice id a list", "metadata a string", "delivery id too long"],
)
async def test_a_signed_btcpay_event_of_the_wrong_shape_is_a_400(
    http: httpx.AsyncClient, fields: dict[str, object]
) -> None:
    body, headers = _btcpay(**fields)
    response = await http.post("/api/payments/webhooks/CRYPTO_BTCPAY", content=body, headers=headers)
    _refused(response, "BTCPay webhook refused")


@pytest.mark.parametrize("field", ["transId", "status"])
async def test_a_comgate_push_with_an_overlong_value_is_a_400(http: httpx.AsyncClient, field: str) -> None:
    fields = {"merchant": MERCHANT, "secret": COMGATE_SECRET, "transId": "AB12-CD34-EF56", "status": "PAID"}
    fields[field] = "A" * 251
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    response = await http.post("/api/payments/webhooks/COMGATE", content=urlencode(fields).encode(), headers=form)
    _refused(response, "Comgate push refused: transId or status too long")


async def test_well_formed_events_for_unknown_payments_are_still_acknowledged(http: httpx.AsyncClient) -> None:
    """The checks refuse only the malformed: a proper event naming no payment is a 200, as before."""
    event = {"id": "evt_ok", "type": "payment_intent.succeeded", "data": {"object": {"id": "pi_unknown"}}}
    body, headers = signed_stripe_event(event, STRIPE_SECRET)
    stripe = await http.post("/api/payments/webhooks/STRIPE", content=body, headers=headers)
    assert stripe.status_code == 200 and stripe.json()["outcome"] == "ignored: unknown payment"
    body, headers = _btcpay()
    btcpay = await http.post("/api/payments/webhooks/CRYPTO_BTCPAY", content=body, headers=headers)
    assert btcpay.status_code == 200 and btcpay.json()["outcome"] == "ignored: unknown payment"
