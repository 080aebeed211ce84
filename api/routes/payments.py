"""Payments: /api/payments (catalogue, checkout, the caller's payments, refunds) and the gateways' webhooks.

Each route parses, authenticates, rate-limits and calls one PaymentService method (services/payments.py).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse, PlainTextResponse

from api.deps import CurrentUser, IdempotencyKey, Payments
from api.errors import errors
from api.ratelimit import NotLimitedRoute, Quota, RateLimit, RateLimitedRoute
from models.api.payments import CatalogueListing, CheckoutRequest, CheckoutResponse, PaymentPublic, WebhookReceipt
from models.enums import PaymentGateway

router = APIRouter(prefix="/api/payments", tags=["payments"], route_class=RateLimitedRoute)
webhooks = APIRouter(prefix="/api/payments/webhooks", tags=["payments"], route_class=NotLimitedRoute)
"""Not rate limited: a gateway sends many webhooks from few addresses; the signature is the gate."""


def _accepted(model: type[Any], description: str) -> dict[int | str, dict[str, Any]]:
    return {202: {"model": model, "description": description}}


@router.get("/catalogue", response_model=CatalogueListing, responses=errors(429))
async def catalogue(payments: Payments, _: Annotated[Quota, RateLimit("default")]) -> Response:
    """What is sold, at what price per currency, and which currencies each gateway takes."""
    return Response(payments.catalogue(), media_type="application/json")


@router.post(
    "/checkout",
    status_code=status.HTTP_201_CREATED,
    responses={
        **_accepted(
            CheckoutResponse,
            "Saved and under way, `next_action` not known yet: the gateway is slow, or no worker has taken the "
            "checkout yet (it goes on when one polls). Poll `status_url`, or repeat with the same Idempotency-Key",
        ),
        **errors(401, 409, 422, 429, 502, 503),
    },
)
async def checkout(
    body: CheckoutRequest,
    user: CurrentUser,
    payments: Payments,
    response: Response,
    _: Annotated[Quota, RateLimit("default")],
    idempotency_key: IdempotencyKey = None,
) -> CheckoutResponse:
    """Start paying for a tier. Send an `Idempotency-Key`: a repeat returns the same payment. 502: the gateway
    refused the payment; 503: the gateway is not configured here, or Temporal is unreachable (nothing saved).
    202: the payment is saved and its workflow runs, but `next_action` is not known yet; poll `status_url`."""
    answer = await payments.checkout(user, body, idempotency_key)
    if answer.in_progress:
        response.status_code = status.HTTP_202_ACCEPTED
    return answer.body


@router.get("", name="list", responses=errors(401, 422, 429))
async def list_payments(
    user: CurrentUser,
    payments: Payments,
    _: Annotated[Quota, RateLimit("default")],
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[PaymentPublic]:
    """The caller's own payments, newest first."""
    return await payments.payments(user, limit=limit, offset=offset)


@router.get("/{payment_id}", name="get", responses=errors(401, 404, 422, 429))
async def get_payment(
    payment_id: uuid.UUID, user: CurrentUser, payments: Payments, _: Annotated[Quota, RateLimit("default")]
) -> PaymentPublic:
    return await payments.payment(user, payment_id)


@router.post(
    "/{payment_id}/refund",
    responses={
        **_accepted(PaymentPublic, "The gateway is slow: the refund is under way"),
        **errors(401, 404, 409, 422, 429, 502, 503),
    },
)
async def refund(
    payment_id: uuid.UUID,
    user: CurrentUser,
    payments: Payments,
    response: Response,
    _: Annotated[Quota, RateLimit("default")],
) -> PaymentPublic:
    """Refund a completed payment in full, within PAYMENT_REFUND_WINDOW_DAYS; the tier is taken back.
    409: not refundable (not completed, or the window has closed); 502: the gateway refused the refund."""
    answer = await payments.refund(user, payment_id)
    if answer.in_progress:
        response.status_code = status.HTTP_202_ACCEPTED
    return answer.body


@webhooks.post("/{gateway}", name="webhook", response_model=WebhookReceipt, responses=errors(400, 422, 503))
async def webhook(gateway: PaymentGateway, request: Request, payments: Payments) -> Response:
    """A gateway's notice. 400: forged, stale or malformed, nothing was signalled; 503: not verified or not
    handed to Temporal now, so the gateway delivers it again."""
    outcome = await payments.receive_webhook(gateway, request.headers, await request.body())
    if gateway == PaymentGateway.COMGATE:  # Comgate reads a form-encoded answer
        return PlainTextResponse("code=0&message=OK")
    return JSONResponse(WebhookReceipt(outcome=outcome).model_dump())
