"""Payments: the catalogue, checkout (one CheckoutWorkflow per payment), the caller's payments, refunds, and
gateway webhooks.

Prices come from the catalogue (models/catalogue.toml), never from the request. A checkout stages its row,
then starts the payment's workflow together with the `checkout_action` update, whose result (the gateway's
client secret or page) is the frontend's next step. The refund rules live in the workflow's update
validator; this module only turns its answers into the API's. No database session is open while Temporal
or a gateway is called.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from sqlmodel import col, select
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateHandle, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities import payments as gateways
from activities.payments.common import WebhookNotice, WebhookRejected
from models import search_attributes
from models.api.payments import (
    CatalogueListing,
    CheckoutRequest,
    CheckoutResponse,
    NextAction,
    PaymentPublic,
    TierPrice,
)
from models.catalogue import NotForSale, Price, catalogue
from models.enums import GatewayState, PaymentGateway, PaymentStatus
from models.messages.payments import CheckoutAction, CheckoutOrder
from models.tables import Payment
from observability import metrics
from services.accounts import Account
from services.errors import BadGateway, BadRequest, Conflict, NotFound, Unavailable, Unprocessable
from services.idempotency import claim
from services.runtime import Service
from services.staging import staged
from services.temporal import reaching_temporal, rpc_timeout, start_with_update
from settings import Settings
from workflows.checkout import ALREADY_REFUNDED, REFUND_REFUSED, START_POLICY, CheckoutWorkflow, workflow_id

log = logging.getLogger(__name__)

Body = TypeVar("Body")

STATUS_UNREADABLE = (
    "The payment was started but the workflow service stopped answering; "
    "repeat this request with the same Idempotency-Key"
)
AWAITING_WORKER = (
    "The payment is saved and its checkout is queued until a worker takes it; poll status_url, or repeat this "
    "request with the same Idempotency-Key for the gateway's next step"
)
WEBHOOK_NOT_TAKEN = "The workflow service is unavailable; the webhook was not taken, deliver it again"


@dataclass(frozen=True)
class Answer(Generic[Body]):
    """A service's answer, and whether the work is still under way (the route answers 202 then)."""

    body: Body
    in_progress: bool = False


@functools.cache
def _catalogue_document(btcpay_currency: str) -> bytes:
    offer = catalogue()
    accepted = {
        gateway: offer.accepted_currencies(gateway, btcpay_currency)
        for gateway in PaymentGateway
        if gateway != PaymentGateway.CRYPTO_COINBASE
    }
    tiers = [
        TierPrice(tier=tier, name=item.name, description=item.description, prices=item.prices)
        for tier, item in offer.tiers.items()
    ]
    return CatalogueListing(tiers=tiers, gateways=accepted).model_dump_json().encode()


class PaymentService(Service):
    def catalogue(self) -> bytes:
        """What is sold, at what price per currency, and which currencies each gateway takes, as JSON: the same
        for every caller until the next deploy, so encoded once per process."""
        return _catalogue_document(self.settings.btcpay_currency)

    async def checkout(
        self, user: Account, body: CheckoutRequest, idempotency_key: str | None
    ) -> Answer[CheckoutResponse]:
        """Price the order, stage its row, start its workflow and wait (briefly) for the gateway's next step.
        With an Idempotency-Key a repeat finds the same payment and asks its workflow again; the same key for
        a different checkout is a 422."""
        price = self._price(body)
        payment_id = await claim(self.database, "payment", str(user.id), idempotency_key, body.model_dump(mode="json"))
        async with self.database.session() as db:
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
            async with staged(self.database, payment):
                update = await self._start(payment, price)
        elif payment.status != PaymentStatus.PENDING:
            return Answer(_checkout_response(payment))  # settled: nothing left to start or ask
        else:
            update = await self._start(payment, price)
        return await self._next_action(payment, update)

    async def payment(self, user: Account, payment_id: uuid.UUID) -> PaymentPublic:
        return _public(await self._own(user, payment_id))

    async def payments(self, user: Account, *, limit: int, offset: int) -> list[PaymentPublic]:
        """The caller's own payments, newest first."""
        async with self.database.session() as db:
            rows = await db.exec(
                select(Payment)
                .where(Payment.user_id == user.id)
                .order_by(col(Payment.created_at).desc(), col(Payment.id))
                .offset(offset)
                .limit(limit)
            )
            return [_public(payment) for payment in rows.all()]

    async def refund(self, user: Account, payment_id: uuid.UUID) -> Answer[PaymentPublic]:
        """Ask the payment's workflow for a refund. Whether one is allowed is its validator's decision; a
        payment refunded already is answered as it stands, so a repeated request is harmless."""
        payment = await self._own(user, payment_id)
        handle = self.temporal.get_workflow_handle_for(CheckoutWorkflow.run, workflow_id(payment.id))
        in_progress = workflow_ended = False
        try:
            await asyncio.wait_for(
                handle.execute_update(CheckoutWorkflow.request_refund, rpc_timeout=rpc_timeout(self.settings)),
                timeout=self.settings.payment_checkout_wait_seconds,
            )
        except WorkflowUpdateFailedError as err:
            _raise_unless_refunded(err, payment.gateway)
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            in_progress = True
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise Unavailable("The workflow service is unavailable; nothing was refunded, try again") from err
            workflow_ended = True
        payment = await self._own(user, payment_id)
        if workflow_ended and payment.status != PaymentStatus.REFUNDED:
            raise Conflict(f"Not refunded: this {payment.status} payment can no longer be refunded")
        return Answer(_public(payment), in_progress=in_progress)

    async def receive_webhook(self, gateway: PaymentGateway, headers: Mapping[str, str], body: bytes) -> str:
        """Verify first; then signal the payment's workflow (which ignores events it has seen). Returns what
        became of the notice; a 2xx goes back only once Temporal has the signal, else the gateway retries."""
        try:
            notice = await gateways.verify_webhook(self.settings, gateway, headers, body)
        except WebhookRejected as err:
            log.warning("rejected %s webhook: %s", gateway, err, extra={"gateway": gateway, "reason": str(err)})
            raise BadRequest(str(err)) from err
        except gateways.GatewayNotConfigured as err:
            raise Unavailable(str(err)) from err
        except ApplicationError as err:  # the gateway's verification service did not answer: it delivers again
            log.warning("could not verify a %s webhook: %s", gateway, err)
            raise Unavailable(f"{gateway} webhook not verified now: {err}") from err
        if notice is None:
            return "ignored: not a payment event"
        payment = await self._named_by_webhook(gateway, notice.payment_id, notice.gateway_id)
        if payment is None:
            log.warning("%s webhook %s names no known payment", gateway, notice.event.event_id)
            return "ignored: unknown payment"
        if mismatch := _mismatch(notice, payment):
            # Signed by the gateway, but for another object or amount than the payment it names (our id in
            # someone else's metadata, a cheaper PaymentIntent): it completes nothing. A 2xx all the same, as
            # gateways expect for an event the receiver does not act on, so it is not delivered again.
            log.warning(
                "%s webhook %s does not match payment %s: %s",
                gateway,
                notice.event.event_id,
                payment.id,
                mismatch,
                extra={"gateway": gateway, "payment_id": str(payment.id), "reason": mismatch},
            )
            metrics.webhooks_mismatched.labels(gateway=gateway).inc()
            return f"ignored: {mismatch}"
        if notice.event.state == GatewayState.PAID and not _checkable(notice, payment):
            # A payment is completed only by an event compared in full. With nothing to compare against (the
            # gateway's id not stored yet, an event without its amount, as BTCPay's), the event only asks the
            # workflow to read the state from the gateway itself, by the id the workflow holds. Other states
            # (a refund, a failure) take nothing from the merchant and are taken as they come.
            notice = dataclasses.replace(
                notice,
                event=notice.event.model_copy(
                    update={"state": None, "detail": f"{notice.event.detail[:230]} (not checked)"}
                ),
            )
        handle = self.temporal.get_workflow_handle_for(CheckoutWorkflow.run, workflow_id(payment.id))
        with reaching_temporal(WEBHOOK_NOT_TAKEN):
            try:
                await handle.signal(
                    CheckoutWorkflow.gateway_event, notice.event, rpc_timeout=rpc_timeout(self.settings)
                )
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                log.warning(
                    "%s webhook %s for payment %s after its workflow ended", gateway, notice.event.event_id, payment.id
                )
                return "ignored: the payment's workflow has ended"
        return "signalled"

    # --- steps -------------------------------------------------------------------------------------------

    def _price(self, body: CheckoutRequest) -> Price:
        try:
            price = catalogue().price(
                body.tier, body.gateway, body.currency, btcpay_currency=self.settings.btcpay_currency
            )
        except NotForSale as err:
            raise Unprocessable(str(err)) from err
        if not gateways.is_configured(self.settings, body.gateway):
            raise Unavailable(f"{body.gateway} is not configured on this server; choose another gateway")
        return price

    async def _start(self, payment: Payment, price: Price) -> WorkflowUpdateHandle[CheckoutAction] | None:
        """Start the payment's workflow, or join it if it runs, and ask it for the frontend's next step; None
        when the workflow runs (or may) but no worker took the question in time."""
        return await start_with_update(
            self.temporal,
            self.settings,
            CheckoutWorkflow.checkout_action,
            CheckoutWorkflow.run,
            checkout_order(self.settings, payment, price),
            id=workflow_id(payment.id),
            policy=START_POLICY,
            search_attributes=search_attributes.for_resource(payment.id, payment.user_id, gateway=payment.gateway),
            summary=f"{payment.tier} for {price.display} via {payment.gateway}",
        )

    async def _next_action(
        self, payment: Payment, update: WorkflowUpdateHandle[CheckoutAction] | None
    ) -> Answer[CheckoutResponse]:
        """The update's result is the next step; no worker to take the update, or a gateway slower than
        PAYMENT_CHECKOUT_WAIT_SECONDS, gets a 202 (the payment exists; a repeat with the same key asks again)."""
        if update is None:
            return Answer(_checkout_response(payment, message=AWAITING_WORKER), in_progress=True)
        try:
            action = await asyncio.wait_for(update.result(), timeout=self.settings.payment_checkout_wait_seconds)
        except WorkflowUpdateFailedError as err:
            raise BadGateway(f"{payment.gateway} refused the payment: {_cause(err)}") from err
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            message = f"{payment.gateway} is slow to answer; repeat this request with the same Idempotency-Key"
            return Answer(_checkout_response(payment, message=message), in_progress=True)
        except RPCError as err:
            raise Unavailable(STATUS_UNREADABLE) from err
        async with self.database.session() as db:  # the workflow has stored the gateway's id by now
            stored = await db.get(Payment, payment.id)
        return Answer(_checkout_response(stored or payment, next_action=next_action(action)))

    async def _own(self, user: Account, payment_id: uuid.UUID) -> Payment:
        async with self.database.session() as db:
            payment = await db.get(Payment, payment_id)
        if payment is None or payment.user_id != user.id:  # someone else's payment does not exist for you
            raise NotFound("Payment")
        return payment

    async def _named_by_webhook(
        self, gateway: PaymentGateway, payment_id: uuid.UUID | None, gateway_id: str | None
    ) -> Payment | None:
        """The payment a webhook names, by our id where the gateway echoes it, else by the gateway's id."""
        async with self.database.session() as db:
            if payment_id is not None and (payment := await db.get(Payment, payment_id)) is not None:
                return payment if payment.gateway == gateway else None
            if gateway_id is None:
                return None
            found = await db.exec(select(Payment).where(Payment.gateway == gateway, Payment.gateway_id == gateway_id))
            return found.first()


def _mismatch(notice: WebhookNotice, payment: Payment) -> str | None:
    """What in a verified event contradicts the payment it names: the gateway's object id, the amount or the
    currency; None when nothing said contradicts it (what the event leaves out is `_checkable`'s matter)."""
    if notice.gateway_id is not None and payment.gateway_id is not None and notice.gateway_id != payment.gateway_id:
        return "the gateway's object is not this payment's"
    if notice.currency is not None and notice.currency != payment.currency.upper():
        return "the currency is not this payment's"
    if notice.amount_minor is not None and notice.amount_minor != payment.amount_minor:
        return "the amount is not this payment's"
    if notice.amount is not None:
        try:
            expected = catalogue().decimal(payment.amount_minor, payment.currency)
        except KeyError:
            return "the payment's currency is no longer in the catalogue"
        if notice.amount != expected:
            return "the amount is not this payment's"
    return None


def _checkable(notice: WebhookNotice, payment: Payment) -> bool:
    """Whether the event's object id, amount and currency were all there to compare."""
    has_amount = notice.amount_minor is not None or notice.amount is not None
    return (
        notice.gateway_id is not None and payment.gateway_id is not None and has_amount and notice.currency is not None
    )


def checkout_order(settings: Settings, payment: Payment, price: Price) -> CheckoutOrder:
    """CheckoutWorkflow's input: the payment as priced by the catalogue, and the rules of its gateway; the user's
    id, not their address (the email activity reads it)."""
    return CheckoutOrder(
        payment_id=payment.id,
        user_id=payment.user_id,
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


def next_action(action: CheckoutAction) -> NextAction:
    """The workflow's message in the API's shape, field by field."""
    return NextAction(kind=action.kind, client_secret=action.client_secret, redirect_url=action.redirect_url)


def _public(payment: Payment, *, next_action: NextAction | None = None) -> PaymentPublic:
    """The API's view of a row. Only a PENDING payment has a next step: the one given (the update's result),
    else the one its workflow stored with the row (for GET and for a 202's repeat)."""
    if payment.status != PaymentStatus.PENDING:
        next_action = None
    elif next_action is None and (stored := (payment.details or {}).get("next_action")):
        next_action = NextAction.model_validate(stored)
    return PaymentPublic.model_validate(payment).model_copy(update={"next_action": next_action})


def _checkout_response(
    payment: Payment, *, next_action: NextAction | None = None, message: str | None = None
) -> CheckoutResponse:
    return CheckoutResponse(
        payment=_public(payment, next_action=next_action),
        workflow_id=workflow_id(payment.id),
        status_url=status_url(payment.id),
        message=message,
    )


def status_url(payment_id: uuid.UUID) -> str:
    """Where a client reads the payment: GET, with the access token."""
    return f"/api/payments/{payment_id}"


def _raise_unless_refunded(err: WorkflowUpdateFailedError, gateway: PaymentGateway) -> None:
    """A refund the workflow said no to: refunded already is fine (answered as it stands); the gateway's
    refusal is a 502; any other rule of the validator is a 409 in the validator's words."""
    kind = err.cause.type if isinstance(err.cause, ApplicationError) else None
    if kind == ALREADY_REFUNDED:
        return
    if kind == REFUND_REFUSED:
        raise BadGateway(f"{gateway} refused the refund: {_cause(err)}") from err
    raise Conflict(f"Not refunded: {_cause(err)}") from err


def _cause(err: WorkflowUpdateFailedError) -> str:
    cause: Any = err.cause
    return str(getattr(cause, "message", None) or cause or err)
