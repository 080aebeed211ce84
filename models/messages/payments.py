"""CheckoutWorkflow's input, signals, query, and the gateway activities' inputs and outputs."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from models.enums import GatewayState, PaymentGateway, PaymentStatus, ServiceTier


class CheckoutAction(BaseModel):
    """What the frontend does next: confirm with Stripe.js, or send the customer to the gateway's page."""

    kind: Literal["stripe_client_secret", "redirect"]
    client_secret: str | None = Field(default=None, description="Stripe: for stripe.confirmPayment()")
    redirect_url: str | None = Field(default=None, description="PayPal, BTCPay, Comgate: the gateway's page")


class CheckoutOrder(BaseModel):
    """CheckoutWorkflow's input: everything fixed at checkout, amounts from the catalogue."""

    payment_id: uuid.UUID
    user_id: uuid.UUID
    email: str | None = None
    """Only in runs begun before the receipt was sent to the account's address read by the activity
    (`email-by-user-id`); new runs carry the user's id alone."""
    tier: ServiceTier
    tier_name: str
    gateway: PaymentGateway
    amount_minor: int = Field(gt=0)
    currency: str
    amount_display: str
    return_url: str
    cancel_url: str
    expires_after: timedelta
    poll_every: timedelta
    refund_window: timedelta
    watch_refunds_for: timedelta

    def at_gateway(self, gateway_id: str) -> GatewayReference:
        return GatewayReference(
            payment_id=self.payment_id,
            gateway=self.gateway,
            gateway_id=gateway_id,
            amount_minor=self.amount_minor,
            currency=self.currency,
        )


class GatewaySession(BaseModel):
    """The gateway's object for one payment, and what the frontend needs to pay it."""

    gateway_id: str
    action: CheckoutAction


class GatewayReference(BaseModel):
    payment_id: uuid.UUID
    gateway: PaymentGateway
    gateway_id: str
    amount_minor: int
    currency: str


class GatewayStatus(BaseModel):
    state: GatewayState
    detail: str = Field(description="The gateway's own words, e.g. Stripe's `succeeded`")


class GatewayEvent(BaseModel):
    """A verified webhook, as a signal. `state` None means: the notice is not trusted, re-read the gateway."""

    event_id: str = Field(max_length=255)
    state: GatewayState | None
    detail: str = Field(max_length=255)


class GatewayObject(BaseModel):
    payment_id: uuid.UUID
    session: GatewaySession


class PaymentHistoryEntry(BaseModel):
    at: datetime
    what: str


class PaymentProgress(BaseModel):
    payment_id: uuid.UUID | None
    gateway: PaymentGateway | None
    status: PaymentStatus
    gateway_state: GatewayState
    gateway_id: str | None
    next_action: CheckoutAction | None
    refundable_until: datetime | None
    history: list[PaymentHistoryEntry]
