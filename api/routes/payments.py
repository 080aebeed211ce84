"""Payments: checkout (a CheckoutWorkflow per payment), the user's payments, refunds, and gateway webhooks.

The price of a checkout comes from the catalogue (models/catalogue.toml), never from the request. The
gateway's answer (Stripe's client secret, a redirect URL) is obtained within the request through an
update-with-start on the payment's workflow, which returns as soon as the gateway has created its object.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlmodel import col, select
from temporalio.client import (
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities import payments as gateways
from activities.payments.common import WebhookRejected
from api.deps import CurrentUser, IdempotencyKey, SessionDep, SettingsDep, TemporalClient, resource_id, stage
from api.ratelimit import RateLimitedRoute
from models.api.payments import CatalogueListing, CheckoutRequest, CheckoutResponse, PaymentPublic, TierPrice
from models.catalogue import NotForSale, Price, catalogue
from models.enums import PaymentGateway, PaymentStatus
from models.messages.payments import CheckoutAction, CheckoutOrder
from models.tables import Payment, User
from settings import Settings
from workflows import search_attributes
from workflows.checkout import CheckoutWorkflow, workflow_id

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/payments", tags=["payments"], route_class=RateLimitedRoute)
webhooks = APIRouter(prefix="/api/payments/webhooks", tags=["payments"])
"""Not rate limited: a gateway sends many webhooks from few addresses; the signature is the gate."""


@router.get("/catalogue", response_model=CatalogueListing)
async def list_catalogue(settings: SettingsDep) -> CatalogueListing:
    """What is sold, at what price per currency, and which currencies each gateway takes."""
    offer = catalogue()
    accepted = {
        gateway: offer.accepted_currencies(gateway, settings.btcpay_currency)
        for gateway in PaymentGateway
        if gateway != PaymentGateway.CRYPTO_COINBASE
    }
    tiers = [
        TierPrice(tier=tier, name=item.name, description=item.description, prices=item.prices)
        for tier, item in offer.tiers.items()
    ]
    return CatalogueListing(tiers=tiers, gateways=accepted)


@router.post(
    "/checkout",
    status_code=status.HTTP_201_CREATED,
    response_model=CheckoutResponse,
    responses={
        202: {"description": "The gateway is slow: the payment exists, `next_action` will follow on a repeat"},
        502: {"description": "The gateway refused the payment"},
        503: {"description": "The gateway is not configured, or Temporal is unavailable"},
    },
)
async def checkout(
    body: CheckoutRequest,
    user: CurrentUser,
    db: SessionDep,
    temporal: TemporalClient,
    settings: SettingsDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CheckoutResponse:
    """Start paying for a tier. Send an `Idempotency-Key`: a repeat returns the same payment."""
    try:
        price = catalogue().price(body.tier, body.gateway, body.currency, btcpay_currency=settings.btcpay_currency)
    except NotForSale as err:
        raise HTTPException(422, str(err)) from err
    if not gateways.is_configured(settings, body.gateway):
        raise HTTPException(503, f"{body.gateway} is not configured on this server; choose another gateway")

    payment_id = resource_id("payment", str(user.id), idempotency_key)
    payment = await db.get(Payment, payment_id)
    if payment is None:
        payment = Payment(
            id=payment_id,
            user_id=user.id,
            amount_minor=price.amount_minor,
            currency=price.currency,
            gateway=body.gateway,
            tier=body.tier,
            idempotency_key=idempotency_key,
        )
        await stage(db, payment)
    elif (payment.tier, payment.gateway, payment.currency) != (body.tier, body.gateway, price.currency):
        raise HTTPException(422, "This Idempotency-Key was used for a different checkout; send a new key")

    if payment.status != PaymentStatus.PENDING:
        return CheckoutResponse(payment=_public(payment), workflow_id=workflow_id(payment.id))

    order = checkout_order(settings, user, payment, price)
    start = WithStartWorkflowOperation(
        CheckoutWorkflow.run,
        order,
        id=workflow_id(payment.id),
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        search_attributes=search_attributes.for_resource(payment.id, user.id, gateway=payment.gateway),
        static_summary=f"{payment.tier} for {price.display} via {payment.gateway}",
    )
    try:
        update = await temporal.start_update_with_start_workflow(
            CheckoutWorkflow.checkout_action,
            start_workflow_operation=start,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            rpc_timeout=timedelta(seconds=settings.temporal_rpc_timeout_seconds),
        )
    except (WorkflowUpdateRPCTimeoutOrCancelledError, WorkflowAlreadyStartedError) as err:
        raise HTTPException(503, "The payment service is busy; nothing was charged, please try again") from err
    await db.commit()

    try:
        action: CheckoutAction | None = await asyncio.wait_for(
            update.result(), timeout=settings.payment_checkout_wait_seconds
        )
    except WorkflowUpdateFailedError as err:
        raise HTTPException(502, f"{payment.gateway} refused the payment: {_cause(err)}") from err
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        response.status_code = status.HTTP_202_ACCEPTED
        return CheckoutResponse(
            payment=_public(payment),
            workflow_id=workflow_id(payment.id),
            message=f"{payment.gateway} is slow to answer; repeat this request with the same Idempotency-Key",
        )
    await db.refresh(payment)  # the workflow has stored the gateway's id by now
    return CheckoutResponse(
        payment=_public(payment).model_copy(update={"next_action": action}), workflow_id=workflow_id(payment.id)
    )


@router.get("", response_model=list[PaymentPublic])
async def list_payments(
    user: CurrentUser,
    db: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[PaymentPublic]:
    """The caller's own payments, newest first."""
    rows = await db.exec(
        select(Payment)
        .where(Payment.user_id == user.id)
        .order_by(col(Payment.created_at).desc(), col(Payment.id))
        .offset(offset)
        .limit(limit)
    )
    return [_public(payment) for payment in rows.all()]


@router.get("/{payment_id}", response_model=PaymentPublic, responses={404: {"description": "No such payment"}})
async def get_payment(payment_id: uuid.UUID, user: CurrentUser, db: SessionDep) -> PaymentPublic:
    return _public(await _own_payment(db, user, payment_id))


@router.post(
    "/{payment_id}/refund",
    response_model=PaymentPublic,
    responses={
        202: {"description": "The gateway is slow: the refund is under way"},
        404: {"description": "No such payment"},
        409: {"description": "Not refundable (not completed, refunded already, or the window has closed)"},
    },
)
async def refund_payment(
    payment_id: uuid.UUID,
    user: CurrentUser,
    db: SessionDep,
    temporal: TemporalClient,
    settings: SettingsDep,
    response: Response,
) -> PaymentPublic:
    """Refund a completed payment in full, within PAYMENT_REFUND_WINDOW_DAYS; the tier is taken back."""
    payment = await _own_payment(db, user, payment_id)
    if payment.status == PaymentStatus.REFUNDED:
        return _public(payment)
    if settings.payment_refund_window_days == 0:
        raise HTTPException(409, "Refunds are handled by support on this server; please contact us")
    if payment.status != PaymentStatus.COMPLETED:
        raise HTTPException(409, f"Only a completed payment can be refunded; this one is {payment.status}")
    handle = temporal.get_workflow_handle_for(CheckoutWorkflow.run, workflow_id(payment.id))
    try:
        await asyncio.wait_for(
            handle.execute_update(
                CheckoutWorkflow.request_refund, rpc_timeout=timedelta(seconds=settings.temporal_rpc_timeout_seconds)
            ),
            timeout=settings.payment_checkout_wait_seconds,
        )
    except WorkflowUpdateFailedError as err:
        raise HTTPException(409, f"Not refunded: {_cause(err)}") from err
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        raise HTTPException(409, "Not refunded: the refund window of this payment has closed") from err
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        response.status_code = status.HTTP_202_ACCEPTED
    await db.refresh(payment)
    return _public(payment)


@webhooks.post(
    "/{gateway}",
    responses={400: {"description": "Forged, stale or malformed: nothing was signalled"}},
)
async def receive_webhook(
    gateway: PaymentGateway, request: Request, db: SessionDep, temporal: TemporalClient, settings: SettingsDep
) -> Response:
    """Verify first; then signal the payment's workflow, and answer 2xx only once Temporal has the signal."""
    try:
        notice = await gateways.verify_webhook(settings, gateway, request.headers, await request.body())
    except WebhookRejected as err:
        log.warning("rejected %s webhook: %s", gateway, err)
        raise HTTPException(400, str(err)) from err
    except gateways.GatewayNotConfigured as err:
        raise HTTPException(503, str(err)) from err
    except ApplicationError as err:  # the gateway's verification service did not answer: it will deliver again
        log.warning("could not verify a %s webhook: %s", gateway, err)
        raise HTTPException(503, f"{gateway} webhook not verified now: {err}") from err
    if notice is None:
        return _acknowledge(gateway, "ignored: not a payment event")
    payment = await _payment_for(db, gateway, notice.payment_id, notice.gateway_id)
    if payment is None:
        log.warning("%s webhook %s names no known payment", gateway, notice.event.event_id)
        return _acknowledge(gateway, "ignored: unknown payment")
    handle = temporal.get_workflow_handle_for(CheckoutWorkflow.run, workflow_id(payment.id))
    try:
        await handle.signal(
            CheckoutWorkflow.gateway_event,
            notice.event,
            rpc_timeout=timedelta(seconds=settings.temporal_rpc_timeout_seconds),
        )
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise  # Temporal unavailable: 503, and the gateway delivers again later
        log.warning("%s webhook %s for payment %s after its workflow ended", gateway, notice.event.event_id, payment.id)
        return _acknowledge(gateway, "ignored: the payment's workflow has ended")
    return _acknowledge(gateway, "signalled")


# --- helpers -------------------------------------------------------------------------------------------


def checkout_order(settings: Settings, user: User, payment: Payment, price: Price) -> CheckoutOrder:
    """CheckoutWorkflow's input: the payment as priced by the catalogue, and the rules of its gateway."""
    return CheckoutOrder(
        payment_id=payment.id,
        user_id=user.id,
        email=user.email,
        tier=payment.tier,
        tier_name=price.tier_name,
        gateway=payment.gateway,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        amount_display=price.display,
        return_url=settings.payment_return_url.format(payment_id=payment.id),
        cancel_url=settings.payment_cancel_url.format(payment_id=payment.id),
        expires_after=gateways.expiry(settings, payment.gateway),
        poll_every=timedelta(seconds=settings.payment_poll_seconds),
        refund_window=timedelta(days=settings.payment_refund_window_days),
        watch_refunds_for=timedelta(days=max(settings.payment_watch_days, settings.payment_refund_window_days)),
    )


def _public(payment: Payment) -> PaymentPublic:
    action = (payment.details or {}).get("next_action") if payment.status == PaymentStatus.PENDING else None
    return PaymentPublic.model_validate(payment).model_copy(
        update={"next_action": CheckoutAction.model_validate(action) if action else None}
    )


async def _own_payment(db: SessionDep, user: User, payment_id: uuid.UUID) -> Payment:
    payment = await db.get(Payment, payment_id)
    if payment is None or payment.user_id != user.id:  # someone else's payment does not exist for you
        raise HTTPException(404, "Payment not found")
    return payment


async def _payment_for(
    db: SessionDep, gateway: PaymentGateway, payment_id: uuid.UUID | None, gateway_id: str | None
) -> Payment | None:
    """The payment a webhook names, by our id where the gateway echoes it, else by the gateway's id."""
    if payment_id is not None and (payment := await db.get(Payment, payment_id)) is not None:
        return payment if payment.gateway == gateway else None
    if gateway_id is None:
        return None
    found = await db.exec(select(Payment).where(Payment.gateway == gateway, Payment.gateway_id == gateway_id))
    return found.first()


def _cause(err: WorkflowUpdateFailedError) -> str:
    cause: Any = err.cause
    return str(getattr(cause, "message", None) or cause or err)


def _acknowledge(gateway: PaymentGateway, outcome: str) -> Response:
    if gateway == PaymentGateway.COMGATE:  # Comgate reads a form-encoded answer
        return PlainTextResponse("code=0&message=OK")
    return JSONResponse({"received": True, "outcome": outcome})
