"""Crypto through BTCPay Server's Greenfield API over httpx: invoices, their status, refunds as pull payments.

Greenfield has no idempotency header, so our payment id is the invoice's `orderId` and the refund's name:
a retried create or refund first looks for the one an earlier attempt made.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from activities.payments.common import WebhookNotice, WebhookRejected, call, gateway_http, payment_id_from
from models.catalogue import catalogue
from models.enums import GatewayState
from models.messages.payments import (
    CheckoutAction,
    CheckoutOrder,
    GatewayEvent,
    GatewayReference,
    GatewaySession,
    GatewayStatus,
)

_INVOICE_STATES = {"Settled": GatewayState.PAID, "Expired": GatewayState.FAILED, "Invalid": GatewayState.FAILED}
_EVENT_STATES = {
    "InvoiceSettled": GatewayState.PAID,
    "InvoiceExpired": GatewayState.FAILED,
    "InvoiceInvalid": GatewayState.FAILED,
    "InvoiceProcessing": GatewayState.PENDING,  # paid, waiting for confirmations
    "InvoiceReceivedPayment": GatewayState.PENDING,
}


class BTCPayGateway:
    label = "BTCPay"

    def __init__(self, url: str, api_key: str, store_id: str) -> None:
        self.http = gateway_http(url.rstrip("/"), headers={"Authorization": f"token {api_key}"})
        self.store = f"/api/v1/stores/{store_id}"

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await call(self.http, self.label, method, f"{self.store}{path}", **kwargs)).json()

    async def create(self, order: CheckoutOrder) -> GatewaySession:
        reference = str(order.payment_id)
        earlier = await self._call("GET", "/invoices", params={"orderId": reference})
        invoice = earlier[0] if earlier else await self._call("POST", "/invoices", json=_invoice(order))
        action = CheckoutAction(kind="redirect", redirect_url=invoice["checkoutLink"])
        return GatewaySession(gateway_id=invoice["id"], action=action)

    async def status(self, payment: GatewayReference) -> GatewayStatus:
        invoice = await self._call("GET", f"/invoices/{payment.gateway_id}")
        detail = f"invoice {invoice['status']} ({invoice.get('additionalStatus', 'None')})"
        return GatewayStatus(state=_INVOICE_STATES.get(invoice["status"], GatewayState.PENDING), detail=detail)

    async def capture(self, payment: GatewayReference) -> GatewayStatus:
        return await self.status(payment)  # an invoice settles by itself once confirmed on chain

    async def cancel(self, payment: GatewayReference) -> GatewayStatus:
        """An invoice nobody paid is marked Invalid; one being paid (Processing) is left to confirm."""
        current = await self.status(payment)
        if current.detail.startswith("invoice New"):
            await self._call("POST", f"/invoices/{payment.gateway_id}/status", json={"status": "Invalid"})
            return await self.status(payment)
        return current

    async def refund(self, payment: GatewayReference) -> GatewayStatus:
        """A refund is a pull payment the customer claims to their own wallet (BTCPay's refund flow)."""
        name = f"Refund {payment.payment_id}"
        earlier = [pull for pull in await self._call("GET", "/pull-payments") if pull.get("name") == name]
        pull = (
            earlier[0]
            if earlier
            else await self._call(
                "POST",
                f"/invoices/{payment.gateway_id}/refund",
                json={"name": name, "description": "Statex refund", "refundVariant": "Fiat"},
            )
        )
        return GatewayStatus(state=GatewayState.REFUNDED, detail=f"pull payment {pull['id']}: {pull.get('viewLink')}")


def _invoice(order: CheckoutOrder) -> dict[str, Any]:
    return {
        "amount": str(catalogue().decimal(order.amount_minor, order.currency)),
        "currency": order.currency,
        "metadata": {"orderId": str(order.payment_id), "buyerEmail": order.email, "itemDesc": order.tier_name},
        "checkout": {
            "expirationMinutes": max(int(order.expires_after.total_seconds() // 60), 1),
            "redirectURL": order.return_url,
            "redirectAutomatically": True,
        },
    }


def verify_webhook(
    secret: str, store_id: str, tolerance_seconds: int, headers: Mapping[str, str], body: bytes
) -> WebhookNotice | None:
    """`BTCPay-Sig: sha256=<hex>` is the HMAC-SHA256 of the exact body; its signed timestamp must be recent."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, headers.get("btcpay-sig", "")):
        raise WebhookRejected("BTCPay webhook refused: BTCPay-Sig does not match the body")
    try:
        event = json.loads(body)
        kind, invoice_id, delivery = event["type"], event.get("invoiceId"), event["deliveryId"]
        sent_at = float(event["timestamp"])
        if not isinstance(kind, str):
            raise TypeError("type must be a string")
    except (ValueError, KeyError, TypeError) as err:
        raise WebhookRejected(f"BTCPay webhook refused: malformed ({err!r})") from err
    if not math.isfinite(sent_at) or abs(time.time() - sent_at) > tolerance_seconds:  # NaN compares False
        raise WebhookRejected(f"BTCPay webhook refused: timestamp outside the {tolerance_seconds} s tolerance")
    if event.get("storeId") != store_id:
        raise WebhookRejected("BTCPay webhook refused: it is for another store")
    state = _EVENT_STATES.get(kind)
    if state is None or not invoice_id:
        return None
    try:
        if not isinstance(invoice_id, str):
            raise TypeError("invoiceId must be a string")
        return WebhookNotice(
            # a redelivery keeps the first delivery's id: that is what makes it the same event
            event=GatewayEvent(event_id=event.get("originalDeliveryId") or delivery, state=state, detail=kind),
            payment_id=payment_id_from((event.get("metadata") or {}).get("orderId")),
            gateway_id=invoice_id,
        )
    except (TypeError, AttributeError, ValidationError) as err:  # signed, yet not an event's shape
        raise WebhookRejected(f"BTCPay webhook refused: malformed ({err!r})") from err
