"""Stubs of the payment gateways' activities (create, poll, capture, cancel, refund: answering as `Outside` says)
and of the payment records, and the checkout workflow's input."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.enums import GatewayState, PaymentGateway, PaymentStatus, ServiceTier
from models.messages.payments import (
    CheckoutAction,
    CheckoutOrder,
    GatewayObject,
    GatewayReference,
    GatewaySession,
    GatewayStatus,
)
from stubs.base import Stubs


class PaymentStubs(Stubs):
    def all(self) -> list[Callable[..., Any]]:
        return [
            self.create_at_gateway,
            self.gateway_status,
            self.capture_at_gateway,
            self.cancel_at_gateway,
            self.refund_at_gateway,
            self.payment_status,
            self.attach_gateway_object,
            self.complete_payment,
            self.fail_payment,
            self.refund_payment,
        ]

    # --- the gateway -----------------------------------------------------------------------------------------

    @activity.defn(name="create_at_gateway")
    async def create_at_gateway(self, order: CheckoutOrder) -> GatewaySession:
        await self._note(order)
        if self.outside.gateway_refuses:
            raise ApplicationError("the gateway rejected the amount", type="GatewayError", non_retryable=True)
        return GatewaySession(
            gateway_id=f"stub_{order.payment_id.hex[:12]}",
            action=CheckoutAction(kind="redirect", redirect_url=f"https://gateway.invalid/pay/{order.payment_id}"),
        )

    async def _status(self, payment: GatewayReference, state: GatewayState) -> GatewayStatus:
        await self._note(payment)
        return GatewayStatus(state=state, detail=f"stub {state.lower()}")

    @activity.defn(name="gateway_status")
    async def gateway_status(self, payment: GatewayReference) -> GatewayStatus:
        return await self._status(payment, self.outside.gateway_status)

    @activity.defn(name="capture_at_gateway")
    async def capture_at_gateway(self, payment: GatewayReference) -> GatewayStatus:
        return await self._status(payment, GatewayState.PAID)

    @activity.defn(name="cancel_at_gateway")
    async def cancel_at_gateway(self, payment: GatewayReference) -> GatewayStatus:
        return await self._status(payment, self.outside.cancel_answer)

    @activity.defn(name="refund_at_gateway")
    async def refund_at_gateway(self, payment: GatewayReference) -> GatewayStatus:
        return await self._status(payment, self.outside.refund_answer)

    # --- the payment's records -------------------------------------------------------------------------------

    @activity.defn(name="payment_status")
    async def payment_status(self, payment_id: uuid.UUID) -> PaymentStatus:
        await self._note(payment_id)
        return PaymentStatus.PENDING

    @activity.defn(name="attach_gateway_object")
    async def attach_gateway_object(self, attached: GatewayObject) -> None:
        await self._note(attached)

    @activity.defn(name="complete_payment")
    async def complete_payment(self, payment_id: uuid.UUID) -> None:
        await self._note(payment_id)

    @activity.defn(name="fail_payment")
    async def fail_payment(self, payment_id: uuid.UUID) -> None:
        await self._note(payment_id)

    @activity.defn(name="refund_payment")
    async def refund_payment(self, payment_id: uuid.UUID) -> None:
        await self._note(payment_id)


def checkout_order(
    *,
    expires_after: timedelta = timedelta(hours=1),
    poll_every: timedelta = timedelta(minutes=10),
    refund_window: timedelta = timedelta(days=14),
    watch_refunds_for: timedelta = timedelta(days=30),
) -> CheckoutOrder:
    return CheckoutOrder(
        payment_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        tier=ServiceTier.PREMIUM,
        tier_name="Premium",
        gateway=PaymentGateway.STRIPE,
        amount_minor=4900,
        currency="EUR",
        amount_display="49.00 EUR",
        return_url="https://statex.invalid/paid",
        cancel_url="https://statex.invalid/cancelled",
        expires_after=expires_after,
        poll_every=poll_every,
        refund_window=refund_window,
        watch_refunds_for=watch_refunds_for,
    )
