"""Checkout input: the client names a tier and a gateway, never a price; what cannot be sold is a clear 4xx."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from conftest import executable
from helpers import bearer, register_and_login, serve
from payload_keys import CONVERTER
from pydantic import SecretStr
from servers import free_port
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from models.catalogue import catalogue
from models.db import open_session
from models.tables import Payment
from settings import Settings

REFUSED: list[tuple[dict[str, Any], int, str]] = [
    (
        {"tier": "PREMIUM", "gateway": "STRIPE", "amount": 1},
        422,
        "amount not accepted: the price comes from the server's catalogue",
    ),
    (
        {"tier": "PREMIUM", "gateway": "PAYPAL", "price": "0.01", "currency": "EUR"},
        422,
        "price not accepted: the price comes from the server's catalogue",
    ),
    ({"tier": "PREMIUM", "gateway": "STRIPE", "discount": 99}, 422, "body.discount: Extra inputs are not permitted"),
    ({"tier": "EU_COMPLIANCE", "gateway": "STRIPE", "currency": "USD"}, 422, "EU_COMPLIANCE has no price in USD"),
    ({"tier": "STANDARD", "gateway": "COMGATE", "currency": "USD"}, 422, "COMGATE takes CZK, EUR here, not USD"),
    ({"tier": "STANDARD", "gateway": "STRIPE", "currency": "eur"}, 422, "body.currency"),
    (
        {"tier": "STANDARD", "gateway": "CRYPTO_COINBASE"},
        422,
        "Coinbase Commerce was shut down by Coinbase in 2026",
    ),
    ({"tier": "GOLD", "gateway": "STRIPE"}, 422, "body.tier"),
    ({"tier": "STANDARD", "gateway": "STRIPE"}, 503, "STRIPE is not configured on this server"),
]


@pytest.mark.parametrize(("body", "status", "fragment"), REFUSED)
async def test_a_checkout_that_cannot_be_sold_is_refused_clearly(
    api: httpx.AsyncClient, body: dict[str, Any], status: int, fragment: str
) -> None:
    account = await register_and_login(api)
    response = await api.post("/api/payments/checkout", json=body, headers=bearer(account["access_token"]))
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]
    assert (await api.get("/api/payments", headers=bearer(account["access_token"]))).json() == []


async def test_coinbase_points_to_btcpay(api: httpx.AsyncClient) -> None:
    account = await register_and_login(api)
    body = {"tier": "STANDARD", "gateway": "CRYPTO_COINBASE"}
    response = await api.post("/api/payments/checkout", json=body, headers=bearer(account["access_token"]))
    assert "CRYPTO_BTCPAY" in response.json()["error"]


async def test_checkout_needs_a_signed_in_user(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/payments/checkout", json={"tier": "STANDARD", "gateway": "STRIPE"})
    assert response.status_code == 401


async def test_the_catalogue_lists_every_tier_with_integer_prices(api: httpx.AsyncClient) -> None:
    listing = (await api.get("/api/payments/catalogue")).json()
    assert [tier["tier"] for tier in listing["tiers"]] == ["STANDARD", "EU_COMPLIANCE", "PREMIUM"]
    assert all(isinstance(amount, int) for tier in listing["tiers"] for amount in tier["prices"].values())
    assert listing["gateways"]["COMGATE"][0] == "CZK" and listing["gateways"]["CRYPTO_BTCPAY"] == ["EUR"]
    assert "CRYPTO_COINBASE" not in listing["gateways"]


def test_the_catalogue_ranks_tiers_and_formats_minor_units() -> None:
    offer = catalogue()
    assert offer.rank("STANDARD") < offer.rank("EU_COMPLIANCE") < offer.rank("PREMIUM")  # type: ignore[arg-type]
    assert offer.display(72900, "CZK") == "729.00 CZK"
    assert str(offer.decimal(5, "EUR")) == "0.05"


async def test_a_checkout_that_cannot_reach_temporal_leaves_no_payment(settings: Settings, engine: AsyncEngine) -> None:
    """Temporal goes down after the API started: the update-with-start fails, the staged row is deleted again,
    and the customer hears that nothing was saved (nothing reached a gateway)."""
    stripe = settings.model_copy(update={"stripe_secret_key": SecretStr("sk_test_unused")})
    doomed = await WorkflowEnvironment.start_local(
        port=free_port(), dev_server_existing_path=executable("temporal"), data_converter=CONVERTER, ui=False
    )
    key = f"lost-{uuid.uuid4().hex[:8]}"
    async with serve(create_app(stripe, temporal=doomed.client)) as api:
        account = await register_and_login(api)
        await doomed.shutdown()
        response = await api.post(
            "/api/payments/checkout",
            json={"tier": "PREMIUM", "gateway": "STRIPE"},
            headers={**bearer(account["access_token"]), "Idempotency-Key": key},
        )
    assert response.status_code == 503, response.text
    assert "nothing was saved" in response.json()["error"]
    async with open_session(engine) as db:
        assert (await db.exec(select(Payment).where(Payment.idempotency_key == key))).first() is None
