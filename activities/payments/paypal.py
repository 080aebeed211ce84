"""PayPal Orders v2 over httpx: OAuth client credentials, create, capture after the payer's approval, refund.

Idempotent at PayPal: every write carries a PayPal-Request-Id derived from our payment id, so a retried
activity gets the first call's result. Our payment id travels as the purchase unit's `custom_id`, which
PayPal copies onto captures and refunds, so webhooks name the payment.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.payments.common import (
    GatewayFailure,
    WebhookNotice,
    WebhookRejected,
    call,
    gateway_http,
    payment_id_from,
)
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

_ORDER_STATES = {"APPROVED": GatewayState.APPROVED, "VOIDED": GatewayState.FAILED}
_CAPTURE_STATES = {
    "COMPLETED": GatewayState.PAID,
    "REFUNDED": GatewayState.REFUNDED,
    "DECLINED": GatewayState.FAILED,
    "FAILED": GatewayState.FAILED,
}
_EVENT_STATES = {
    "CHECKOUT.ORDER.APPROVED": GatewayState.APPROVED,
    "PAYMENT.CAPTURE.COMPLETED": GatewayState.PAID,
    "PAYMENT.CAPTURE.DENIED": GatewayState.FAILED,
    "PAYMENT.CAPTURE.DECLINED": GatewayState.FAILED,
    "PAYMENT.CAPTURE.REFUNDED": GatewayState.REFUNDED,
}
_TRANSMISSION_HEADERS = {
    "auth_algo": "paypal-auth-algo",
    "cert_url": "paypal-cert-url",
    "transmission_id": "paypal-transmission-id",
    "transmission_sig": "paypal-transmission-sig",
    "transmission_time": "paypal-transmission-time",
}


class PayPalGateway:
    label = "PayPal"

    def __init__(self, api_base: str, client_id: str, client_secret: str, brand_name: str) -> None:
        self.http = gateway_http(api_base.rstrip("/"))
        self.credentials = (client_id, client_secret)
        self.brand_name = brand_name
        self._token: str | None = None
        self._token_expires = 0.0

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _authorized(self) -> dict[str, str]:
        """A bearer token from the client credentials, reused until shortly before it expires."""
        if self._token is None or time.monotonic() > self._token_expires:
            response = await call(
                self.http,
                self.label,
                "POST",
                "/v1/oauth2/token",
                auth=self.credentials,
                data={"grant_type": "client_credentials"},
            )
            grant = response.json()
            self._token = grant["access_token"]
            self._token_expires = time.monotonic() + max(int(grant.get("expires_in", 0)) - 60, 0)
        return {"Authorization": f"Bearer {self._token}"}

    async def _call(self, method: str, path: str, request_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
        headers = await self._authorized()
        if request_id is not None:
            headers |= {"PayPal-Request-Id": request_id, "Prefer": "return=representation"}
        return (await call(self.http, self.label, method, path, headers=headers, **kwargs)).json()

    async def create(self, order: CheckoutOrder) -> GatewaySession:
        reference = str(order.payment_id)
        body = {
            "intent": "CAPTURE",
            "purchase_units": [
                {
                    "reference_id": reference,
                    "custom_id": reference,
                    "description": order.tier_name,
                    "amount": {
                        "currency_code": order.currency,
                        "value": str(catalogue().decimal(order.amount_minor, order.currency)),
                    },
                }
            ],
            "payment_source": {
                "paypal": {
                    "experience_context": {
                        "brand_name": self.brand_name,
                        "user_action": "PAY_NOW",
                        "shipping_preference": "NO_SHIPPING",
                        "payment_method_preference": "IMMEDIATE_PAYMENT_REQUIRED",
                        "return_url": order.return_url,
                        "cancel_url": order.cancel_url,
                    }
                }
            },
        }
        created = await self._call("POST", "/v2/checkout/orders", f"statex-create-{reference}", json=body)
        links = {link["rel"]: link["href"] for link in created.get("links", [])}
        approval = links.get("payer-action") or links.get("approve")
        if approval is None:
            raise ApplicationError(
                f"PayPal order {created.get('id')} came without an approval link", type=GatewayFailure.ERROR
            )
        return GatewaySession(gateway_id=created["id"], action=CheckoutAction(kind="redirect", redirect_url=approval))

    async def status(self, payment: GatewayReference) -> GatewayStatus:
        return _order_status(await self._call("GET", f"/v2/checkout/orders/{payment.gateway_id}"))

    async def capture(self, payment: GatewayReference) -> GatewayStatus:
        captured = await self._call(
            "POST", f"/v2/checkout/orders/{payment.gateway_id}/capture", f"statex-capture-{payment.payment_id}", json={}
        )
        return _order_status(captured)

    async def cancel(self, payment: GatewayReference) -> GatewayStatus:
        """PayPal has no way to cancel an order with intent CAPTURE: an unapproved one is left to lapse."""
        current = await self.status(payment)
        if current.state == GatewayState.PENDING:
            return GatewayStatus(state=GatewayState.FAILED, detail=f"{current.detail}, left to lapse")
        return current

    async def refund(self, payment: GatewayReference) -> GatewayStatus:
        order = await self._call("GET", f"/v2/checkout/orders/{payment.gateway_id}")
        capture_id = _capture(order).get("id")
        if capture_id is None:
            raise ApplicationError(
                "PayPal order has no capture to refund", type=GatewayFailure.CAPTURE_NOT_FOUND, non_retryable=True
            )
        refund = await self._call(
            "POST", f"/v2/payments/captures/{capture_id}/refund", f"statex-refund-{payment.payment_id}", json={}
        )
        if refund.get("status") not in ("COMPLETED", "PENDING"):
            raise ApplicationError(
                f"PayPal refund {refund.get('id')} {refund.get('status')}", type=GatewayFailure.REFUND_FAILED
            )
        return GatewayStatus(state=GatewayState.REFUNDED, detail=f"refund {refund['id']} {refund['status']}")

    async def verify_webhook(self, webhook_id: str, headers: Mapping[str, str], body: bytes) -> WebhookNotice | None:
        """PayPal checks its own signature: the transmission headers and the event go to verify-webhook-signature."""
        try:
            event = json.loads(body)
            transmission = {field: headers[header] for field, header in _TRANSMISSION_HEADERS.items()}
            event_id, event_type, resource = event["id"], event["event_type"], event["resource"]
        except (ValueError, KeyError, TypeError) as err:
            raise WebhookRejected(f"PayPal webhook refused: malformed or unsigned ({err!r})") from err
        verdict = await self._call(
            "POST",
            "/v1/notifications/verify-webhook-signature",
            json={**transmission, "webhook_id": webhook_id, "webhook_event": event},
        )
        if (outcome := verdict.get("verification_status")) != "SUCCESS":
            raise WebhookRejected(f"PayPal webhook refused: signature verification {outcome}")
        state = _EVENT_STATES.get(event_type)
        if state is None:
            return None
        if event_type.startswith("CHECKOUT.ORDER."):
            units = resource.get("purchase_units") or [{}]
            payment_id, gateway_id = payment_id_from(units[0].get("custom_id")), resource.get("id")
            amount, currency = _amount(units[0].get("amount"))
        else:  # a capture or a refund
            related = (resource.get("supplementary_data") or {}).get("related_ids") or {}
            payment_id, gateway_id = payment_id_from(resource.get("custom_id")), related.get("order_id")
            amount, currency = _amount(resource.get("amount"))
        return WebhookNotice(
            event=GatewayEvent(event_id=event_id, state=state, detail=event_type),
            payment_id=payment_id,
            gateway_id=gateway_id,
            amount=amount,
            currency=currency,
        )


def _capture(order: dict[str, Any]) -> dict[str, Any]:
    units = order.get("purchase_units") or [{}]
    captures = (units[0].get("payments") or {}).get("captures") or [{}]
    return captures[0]


def _order_status(order: dict[str, Any]) -> GatewayStatus:
    status = order.get("status", "")
    if status == "COMPLETED":
        capture_status = _capture(order).get("status", "")
        state = _CAPTURE_STATES.get(capture_status, GatewayState.PENDING)
        return GatewayStatus(state=state, detail=f"order COMPLETED, capture {capture_status}")
    return GatewayStatus(state=_ORDER_STATES.get(status, GatewayState.PENDING), detail=f"order {status}")


def _amount(value: object) -> tuple[Decimal | None, str | None]:
    """PayPal's `{"value": "29.00", "currency_code": "EUR"}`; None for what is missing or not a number."""
    if not isinstance(value, dict):
        return None, None
    currency = value.get("currency_code")
    try:
        amount: Decimal | None = Decimal(str(value.get("value")))
    except ArithmeticError:
        amount = None
    if amount is not None and not amount.is_finite():
        amount = None
    return amount, currency.upper() if isinstance(currency, str) else None
