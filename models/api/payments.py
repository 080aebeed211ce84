"""Requests and responses of /api/payments. Never an amount from the client: prices come from the catalogue."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from models.api.common import Strict, examples
from models.enums import PaymentGateway, PaymentStatus, ServiceTier

COINBASE_SHUT_DOWN = (
    "Coinbase Commerce was shut down by Coinbase in 2026 and takes no payments; "
    "pay in crypto with gateway CRYPTO_BTCPAY (BTCPay Server) instead"
)


_CLIENT_PRICE_FIELDS = frozenset({"amount", "amount_minor", "price", "total", "value"})


Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$"), Field(examples=["EUR"])]


class CheckoutRequest(Strict):
    """What to buy and how to pay. Never an amount: prices come from the server's catalogue."""

    model_config = examples({"tier": "PREMIUM", "gateway": "STRIPE", "currency": "EUR"})

    tier: ServiceTier
    gateway: PaymentGateway
    currency: Currency | None = Field(default=None, description="ISO 4217; the gateway's default when omitted")

    @model_validator(mode="before")
    @classmethod
    def _no_client_price(cls, data: object) -> object:
        if isinstance(data, dict) and (sent := sorted(_CLIENT_PRICE_FIELDS & data.keys())):
            raise ValueError(
                f"{', '.join(sent)} not accepted: the price comes from the server's catalogue; "
                "send only tier, gateway and optionally currency"
            )
        return data

    @field_validator("gateway")
    @classmethod
    def _gateway_in_service(cls, gateway: PaymentGateway) -> PaymentGateway:
        if gateway == PaymentGateway.CRYPTO_COINBASE:
            raise ValueError(COINBASE_SHUT_DOWN)
        return gateway


class NextAction(BaseModel):
    """What the frontend does next: confirm with Stripe.js, or send the customer to the gateway's page.

    The API's own shape (the workflow's CheckoutAction is converted into it), so that a change to what
    crosses Temporal cannot change the API unnoticed."""

    kind: Literal["stripe_client_secret", "redirect"]
    client_secret: str | None = Field(default=None, description="Stripe: for stripe.confirmPayment()")
    redirect_url: str | None = Field(default=None, description="PayPal, BTCPay, Comgate: the gateway's page")


class PaymentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    tier: ServiceTier
    gateway: PaymentGateway
    amount_minor: int = Field(description="Integer minor units (cents, hellers) of `currency`")
    currency: str
    status: PaymentStatus
    gateway_id: str | None
    created_at: datetime
    completed_at: datetime | None
    refunded_at: datetime | None
    next_action: NextAction | None = Field(default=None, description="Set while the payment is PENDING")


class CheckoutResponse(BaseModel):
    model_config = examples(
        {
            "payment": {
                "id": "c71f3a2e-5b8d-4e9a-8c6b-1d2e3f4a5b60",
                "tier": "PREMIUM",
                "gateway": "STRIPE",
                "amount_minor": 4900,
                "currency": "EUR",
                "status": "PENDING",
                "gateway_id": "pi_3PexampleA1b2C3d4",
                "created_at": "2026-05-04T10:00:00Z",
                "completed_at": None,
                "refunded_at": None,
                "next_action": {
                    "kind": "stripe_client_secret",
                    "client_secret": "pi_3PexampleA1b2C3d4_secret_e5F6g7H8",
                    "redirect_url": None,
                },
            },
            "workflow_id": "payment-c71f3a2e-5b8d-4e9a-8c6b-1d2e3f4a5b60",
            "status_url": "/api/payments/c71f3a2e-5b8d-4e9a-8c6b-1d2e3f4a5b60",
            "message": None,
        }
    )

    payment: PaymentPublic
    workflow_id: str
    status_url: str = Field(description="The payment: GET it, with the access token, until it is no longer PENDING")
    message: str | None = Field(default=None, description="Why `next_action` is missing, when it is")


class TierPrice(BaseModel):
    tier: ServiceTier
    name: str
    description: str
    prices: dict[str, int] = Field(description="Integer minor units per ISO 4217 currency")


class CatalogueListing(BaseModel):
    tiers: list[TierPrice]
    gateways: dict[PaymentGateway, list[str]] = Field(description="Currencies each gateway takes; first is default")


class WebhookReceipt(BaseModel):
    """The answer to a gateway (Comgate's is the form-encoded `code=0&message=OK` instead)."""

    received: bool = True
    outcome: str = Field(description="signalled, or why the notice was ignored")
