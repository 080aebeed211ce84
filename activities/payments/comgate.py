"""Comgate (Czech/EU) through its HTTP API over httpx: form-encoded requests and answers, price in hellers.

A push notification from Comgate is trusted for nothing but "something changed": its merchant and secret
are compared in constant time, and the workflow then re-reads the status from Comgate's API, as Comgate
asks integrators to do. Comgate has no idempotency key: our payment id is the transaction's refId.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from urllib.parse import parse_qsl

from temporalio.exceptions import ApplicationError

from activities.payments.common import (
    GatewayFailure,
    WebhookNotice,
    WebhookRejected,
    call,
    gateway_http,
    payment_id_from,
)
from models.enums import GatewayState
from models.messages.payments import (
    CheckoutAction,
    CheckoutOrder,
    GatewayEvent,
    GatewayReference,
    GatewaySession,
    GatewayStatus,
)

# Comgate's own result codes another attempt may fix: unknown error, database error, unexpected result.
_RETRYABLE_CODES = frozenset({"1100", "1200", "1399", "1500"})
_STATES = {"PAID": GatewayState.PAID, "CANCELLED": GatewayState.FAILED}


class ComgateGateway:
    label = "Comgate"

    def __init__(self, api_base: str, merchant: str, secret: str, test: bool) -> None:
        self.http = gateway_http(api_base.rstrip("/"))
        self.merchant = merchant
        self.secret = secret
        self.test = "true" if test else "false"

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(self, action: str, fields: dict[str, str]) -> dict[str, str]:
        """POST one form, read the form-encoded answer; a non-zero `code` is Comgate refusing."""
        form = {"merchant": self.merchant, "secret": self.secret, **fields}
        response = await call(self.http, self.label, "POST", f"/v1.0/{action}", data=form)
        answer = dict(parse_qsl(response.text, keep_blank_values=True))
        if (code := answer.get("code")) != "0":
            raise ApplicationError(
                f"Comgate {action} refused: code {code}: {answer.get('message')}",
                type=GatewayFailure.ERROR,
                non_retryable=code not in _RETRYABLE_CODES,
            )
        return answer

    async def create(self, order: CheckoutOrder) -> GatewaySession:
        minutes = max(int(order.expires_after.total_seconds() // 60), 1)
        created = await self._call(
            "create",
            {
                "price": str(order.amount_minor),  # hellers (cents): Comgate's unit
                "curr": order.currency,
                "label": order.tier_name[:16],
                "refId": str(order.payment_id),
                "method": "ALL",
                "email": order.email or "",  # create_at_gateway fills it in from the account
                "country": "CZ",
                "prepareOnly": "true",
                "test": self.test,
                "expirationTime": f"{minutes}m",
                "url_paid": order.return_url,
                "url_cancelled": order.cancel_url,
                "url_pending": order.return_url,
            },
        )
        action = CheckoutAction(kind="redirect", redirect_url=created["redirect"])
        return GatewaySession(gateway_id=created["transId"], action=action)

    async def status(self, payment: GatewayReference) -> GatewayStatus:
        answer = await self._call("status", {"transId": payment.gateway_id})
        status = answer.get("status", "")
        if (answer.get("price"), answer.get("curr")) != (str(payment.amount_minor), payment.currency):
            return GatewayStatus(state=GatewayState.FAILED, detail=f"{status}, but not for our price: refused")
        return GatewayStatus(state=_STATES.get(status, GatewayState.PENDING), detail=status)

    async def capture(self, payment: GatewayReference) -> GatewayStatus:
        return await self.status(payment)  # prepared without preauth: Comgate collects by itself

    async def cancel(self, payment: GatewayReference) -> GatewayStatus:
        try:
            await self._call("cancel", {"transId": payment.gateway_id})
        except ApplicationError as err:
            if not err.non_retryable:
                raise
            # paid or already cancelled: the status says which
        return await self.status(payment)

    async def refund(self, payment: GatewayReference) -> GatewayStatus:
        await self._call(
            "refund",
            {
                "transId": payment.gateway_id,
                "amount": str(payment.amount_minor),
                "curr": payment.currency,
                "refId": str(payment.payment_id),
                "test": self.test,
            },
        )
        return GatewayStatus(state=GatewayState.REFUNDED, detail="refunded")


MAX_TRANS_ID = 64
MAX_STATUS = 32
"""Far above Comgate's own lengths, and short enough that the event id and detail fit their 255 characters."""


def verify_webhook(merchant: str, secret: str, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
    """Comgate's push is a form with our merchant id and secret; compared in constant time, then not trusted
    further: the event asks the workflow to re-read the status from Comgate."""
    try:
        fields = dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True))
    except (UnicodeDecodeError, ValueError) as err:
        raise WebhookRejected(f"Comgate push refused: malformed ({err!r})") from err
    same_merchant = hmac.compare_digest(fields.get("merchant", "").encode(), merchant.encode())
    same_secret = hmac.compare_digest(fields.get("secret", "").encode(), secret.encode())
    if not (same_merchant and same_secret):
        raise WebhookRejected("Comgate push refused: merchant or secret does not match")
    if not (trans_id := fields.get("transId")):
        raise WebhookRejected("Comgate push refused: no transId")
    status = fields.get("status", "")
    if len(trans_id) > MAX_TRANS_ID or len(status) > MAX_STATUS:  # theirs are short (AB12-CD34-EF56, PAID)
        raise WebhookRejected("Comgate push refused: transId or status too long for a Comgate value")
    return WebhookNotice(
        event=GatewayEvent(event_id=f"{trans_id}:{status}", state=None, detail=f"Comgate push says {status or '?'}"),
        payment_id=payment_id_from(fields.get("refId")),
        gateway_id=trans_id,
    )
