"""Stripe PaymentIntents through the official client (`stripe.StripeClient`, async over httpx).

Idempotent at Stripe: every write carries an Idempotency-Key derived from our payment id, so a retried
activity gets the first call's object. The client's own retries are off: Temporal retries.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import stripe
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from activities.payments.common import GatewayFailure, WebhookNotice, WebhookRejected, payment_id_from
from models.enums import GatewayState
from models.messages.payments import (
    CheckoutAction,
    CheckoutOrder,
    GatewayEvent,
    GatewayReference,
    GatewaySession,
    GatewayStatus,
)

# SEPA Direct Debit, iDEAL and Bancontact are euro-only; other currencies are paid by card.
EUR_PAYMENT_METHODS = ["card", "sepa_debit", "ideal", "bancontact"]
_RETRYABLE = (stripe.RateLimitError, stripe.APIConnectionError, stripe.APIError)
_STATES = {"succeeded": GatewayState.PAID, "canceled": GatewayState.FAILED}


def _classified(err: stripe.StripeError) -> ApplicationError:
    """Network trouble, rate limits and Stripe's 5xx are worth another attempt; a refused request is not."""
    return ApplicationError(
        f"Stripe {type(err).__name__}: {err.user_message or err}",
        type=GatewayFailure.UNREACHABLE if isinstance(err, stripe.APIConnectionError) else GatewayFailure.ERROR,
        non_retryable=not isinstance(err, _RETRYABLE),
    )


class StripeGateway:
    label = "Stripe"

    def __init__(self, secret_key: str, api_base: str | None = None) -> None:
        self.http = stripe.HTTPXClient(timeout=20)  # async only: no idle sync client alongside
        self.client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=0,
            http_client=self.http,
        )

    async def aclose(self) -> None:
        await self.http.close_async()

    async def create(self, order: CheckoutOrder) -> GatewaySession:
        params: dict[str, Any] = {
            "amount": order.amount_minor,
            "currency": order.currency.lower(),
            "payment_method_types": EUR_PAYMENT_METHODS if order.currency == "EUR" else ["card"],
            "metadata": {"payment_id": str(order.payment_id), "user_id": str(order.user_id), "tier": order.tier},
        }
        try:
            intent = await self.client.v1.payment_intents.create_async(
                params,  # type: ignore[arg-type]
                options={"idempotency_key": f"statex-payment-{order.payment_id}"},
            )
        except stripe.StripeError as err:
            raise _classified(err) from err
        action = CheckoutAction(kind="stripe_client_secret", client_secret=intent.client_secret)
        return GatewaySession(gateway_id=intent.id, action=action)

    async def status(self, payment: GatewayReference) -> GatewayStatus:
        try:
            intent = await self.client.v1.payment_intents.retrieve_async(
                payment.gateway_id, params={"expand": ["latest_charge"]}
            )
        except stripe.StripeError as err:
            raise _classified(err) from err
        charge = intent.latest_charge
        if intent.status == "succeeded" and isinstance(charge, stripe.Charge) and charge.refunded:
            return GatewayStatus(state=GatewayState.REFUNDED, detail="succeeded, refunded")
        return GatewayStatus(state=_STATES.get(intent.status, GatewayState.PENDING), detail=intent.status)

    async def capture(self, payment: GatewayReference) -> GatewayStatus:
        return await self.status(payment)  # automatic capture: nothing to collect

    async def cancel(self, payment: GatewayReference) -> GatewayStatus:
        try:
            await self.client.v1.payment_intents.cancel_async(payment.gateway_id)
        except stripe.InvalidRequestError:
            pass  # already succeeded, processing or cancelled: the status says which
        except stripe.StripeError as err:
            raise _classified(err) from err
        return await self.status(payment)

    async def refund(self, payment: GatewayReference) -> GatewayStatus:
        try:
            refund = await self.client.v1.refunds.create_async(
                {"payment_intent": payment.gateway_id},
                options={"idempotency_key": f"statex-refund-{payment.payment_id}"},
            )
        except stripe.StripeError as err:
            raise _classified(err) from err
        if refund.status in ("failed", "canceled"):
            raise ApplicationError(f"Stripe refund {refund.id} {refund.status}", type=GatewayFailure.REFUND_FAILED)
        return GatewayStatus(state=GatewayState.REFUNDED, detail=f"refund {refund.id} {refund.status}")


def verify_webhook(
    secret: str, tolerance_seconds: int, headers: Mapping[str, str], body: bytes
) -> WebhookNotice | None:
    """Stripe-Signature checked by Stripe's own code (HMAC-SHA256 over timestamp and body, within tolerance)."""
    try:
        event = stripe.Webhook.construct_event(
            body, headers.get("stripe-signature"), secret, tolerance_seconds
        ).to_dict()
    except (stripe.SignatureVerificationError, ValueError) as err:
        raise WebhookRejected(f"Stripe webhook refused: {err}") from err
    # Stripe's code refuses only a timestamp too far in the past; one from the future is as suspect (a clock
    # the signer controls, or a body signed now to be replayed later), so the tolerance holds both ways.
    signed_at = _signed_at(headers.get("stripe-signature") or "")
    if signed_at is None or abs(time.time() - signed_at) > tolerance_seconds:
        raise WebhookRejected(f"Stripe webhook refused: timestamp outside the {tolerance_seconds} s tolerance")
    try:
        return _notice(event)
    except (KeyError, TypeError, AttributeError, ValidationError) as err:  # signed, yet not an event's shape
        raise WebhookRejected(f"Stripe webhook refused: malformed event ({err!r})") from err


def _signed_at(header: str) -> int | None:
    """The `t=` of a Stripe-Signature header (already verified by Stripe's code, which read the same one)."""
    for item in header.split(","):
        key, _, value = item.partition("=")
        if key.strip() == "t":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _notice(event: dict[str, Any]) -> WebhookNotice | None:
    """A signature proves who sent the body, not its shape: a missing or mistyped field raises here."""
    kind, obj = event["type"], event["data"]["object"]
    if not isinstance(kind, str) or not isinstance(obj, dict):
        raise TypeError("`type` must be a string and `data.object` an object")
    if kind.startswith("payment_intent."):
        state = {
            "payment_intent.succeeded": GatewayState.PAID,
            "payment_intent.canceled": GatewayState.FAILED,
            # a declined attempt: the customer may try another card, so the payment stays open
            "payment_intent.payment_failed": GatewayState.PENDING,
            "payment_intent.processing": GatewayState.PENDING,
        }.get(kind)
        gateway_id = obj["id"]
        payment_id = payment_id_from((obj.get("metadata") or {}).get("payment_id"))
    elif kind == "charge.refunded" and obj.get("refunded"):
        state, gateway_id, payment_id = GatewayState.REFUNDED, obj.get("payment_intent"), None
    else:
        return None
    if state is None or not gateway_id:
        return None
    if not isinstance(gateway_id, str):
        raise TypeError("the payment intent's id must be a string")
    amount, currency = obj.get("amount"), obj.get("currency")  # a PaymentIntent's and a Charge's alike
    return WebhookNotice(
        event=GatewayEvent(event_id=event["id"], state=state, detail=kind),
        payment_id=payment_id,
        gateway_id=gateway_id,
        amount_minor=amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
        currency=currency.upper() if isinstance(currency, str) else None,
    )
