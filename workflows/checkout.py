"""CheckoutWorkflow: one payment, from the gateway's checkout to paid, failed or refunded.

1. Create the payment at its gateway; an update (`checkout_action`) hands the frontend its next step.
2. Wait for the outcome: verified webhooks arrive as `gateway_event` signals (deduplicated by event id,
   in any order); without one, ask the gateway every `poll_every`; at expiry cancel at the gateway.
3. Paid: mark COMPLETED, unlock the tier, email one receipt. Failed or expired: mark FAILED.
4. Then listen for refunds: the customer's own (`request_refund` update, within the refund window) or one
   made in the gateway's dashboard and reported by webhook. Refunded: mark REFUNDED, take the tier back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.mail import EMAIL_BY_USER_ID, send_to_account
from workflows.starting import StartPolicy
from workflows.timeouts import DATABASE_CALL, HEARTBEAT

with workflow.unsafe.imports_passed_through():
    from activities.payment_records import PaymentRecords
    from activities.payments import GatewayActivities
    from models.enums import GatewayState, PaymentStatus
    from models.messages.email import UserEmail
    from models.messages.payments import (
        CheckoutAction,
        CheckoutOrder,
        GatewayEvent,
        GatewayObject,
        GatewayReference,
        GatewayStatus,
        PaymentHistoryEntry,
        PaymentProgress,
    )

GATEWAY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=2))
RECORD_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
CREATE_DEADLINE = timedelta(minutes=10)
"""A gateway still down after this long: the checkout fails rather than leave the customer waiting."""
ROW_DEADLINE = timedelta(minutes=2)
"""The API commits the payment before starting us, and deletes it again only if Temporal says we were not started
(or could not be reached); a row still missing by then never will be."""
SLOW_POLL = timedelta(hours=1)
"""After the cancel at expiry, a payment still in flight is polled this often."""
SETTLED = (GatewayState.PAID, GatewayState.FAILED)


def workflow_id(payment_id: uuid.UUID) -> str:
    return f"payment-{payment_id}"


START_POLICY = StartPolicy(idempotent=True, restart_failed=True)
"""A repeated checkout (same Idempotency-Key, same id) joins the running workflow and asks it again for the
next action. A run that failed because its row never appeared (the request that started it gave up) may be
started anew by the retry; a payment that was created at its gateway is never started twice."""

ALREADY_REFUNDED = "AlreadyRefunded"
NOT_REFUNDABLE = "NotRefundable"
REFUND_REFUSED = "RefundRefused"
"""Why `request_refund` said no: refunded before, refused by its rules (validator), refused by the gateway."""


@workflow.defn
class CheckoutWorkflow:
    def __init__(self) -> None:
        self._order: CheckoutOrder | None = None
        self._status = PaymentStatus.PENDING
        self._gateway_state = GatewayState.PENDING
        self._gateway_id: str | None = None
        self._action: CheckoutAction | None = None
        self._creation_error: str | None = None
        self._check_gateway = False
        self._refund_reported = False
        self._refund_requested = False
        self._refund_error: str | None = None
        self._refundable_until: datetime | None = None
        self._seen_events: set[str] = set()
        self._history: list[PaymentHistoryEntry] = []

    @workflow.run
    async def run(self, order: CheckoutOrder) -> PaymentProgress:
        self._order = order
        await self._ensure_row_exists(order)
        if await self._open_at_gateway(order):
            if await self._outcome_unless_cancelled(order) == GatewayState.PAID:
                await self._complete(order)
                await self._listen_for_refunds(order)
            else:
                await self._record(PaymentRecords.fail_payment, order.payment_id, "mark FAILED")
                self._status = PaymentStatus.FAILED
                self._note("payment failed or expired: marked FAILED")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.progress()

    # --- the steps ---------------------------------------------------------------------------------

    async def _ensure_row_exists(self, order: CheckoutOrder) -> None:
        try:
            await workflow.execute_activity_method(
                PaymentRecords.payment_status,
                order.payment_id,
                start_to_close_timeout=DATABASE_CALL,
                schedule_to_close_timeout=ROW_DEADLINE,
                retry_policy=RECORD_RETRY,
            )
        except ActivityError as err:
            # The request that started us never committed its row: fail, so a retried request may start anew.
            raise ApplicationError("payment row never appeared; nothing was created at the gateway") from err

    async def _open_at_gateway(self, order: CheckoutOrder) -> bool:
        try:
            session = await workflow.execute_activity_method(
                GatewayActivities.create_at_gateway,
                order,
                start_to_close_timeout=timedelta(seconds=60),
                heartbeat_timeout=HEARTBEAT,
                schedule_to_close_timeout=CREATE_DEADLINE,
                retry_policy=GATEWAY_RETRY,
                summary=f"create at {order.gateway}",
            )
        except ActivityError as err:
            self._creation_error = str(err.cause or err)
            self._note(f"the gateway refused the payment: {self._creation_error}")
            await self._record(PaymentRecords.fail_payment, order.payment_id, "mark FAILED")
            self._status = PaymentStatus.FAILED
            return False
        await self._record(
            PaymentRecords.attach_gateway_object,
            GatewayObject(payment_id=order.payment_id, session=session),
            "remember the gateway's id",
        )
        self._gateway_id, self._action = session.gateway_id, session.action
        self._note(f"created at {order.gateway}: {session.gateway_id}")
        return True

    async def _outcome_unless_cancelled(self, order: CheckoutOrder) -> GatewayState:
        """The outcome; but if the workflow is cancelled first (the account is being erased), the payment is
        cancelled at the gateway and marked FAILED before the cancellation goes on: nothing stays payable."""
        try:
            return await self._await_outcome(order)
        except asyncio.CancelledError:
            self._note("cancelled (account erased): cancel at the gateway")
            await self._ask(GatewayActivities.cancel_at_gateway, "cancel: the account is being erased")
            if self._gateway_state != GatewayState.PAID:
                await self._record(PaymentRecords.fail_payment, order.payment_id, "mark FAILED")
                self._status = PaymentStatus.FAILED
            raise

    async def _await_outcome(self, order: CheckoutOrder) -> GatewayState:
        """PAID or FAILED, from webhooks, polls, or the gateway's answer to the cancel at expiry."""
        deadline, poll_every = workflow.now() + order.expires_after, order.poll_every
        cancelled = False
        while self._gateway_state not in SETTLED:
            if self._gateway_state == GatewayState.APPROVED:
                await self._ask(GatewayActivities.capture_at_gateway, "capture")
                if self._gateway_state == GatewayState.APPROVED:  # capture pending or declined: wait for news
                    self._gateway_state = GatewayState.PENDING
                continue
            if self._check_gateway:
                self._check_gateway = False
                await self._ask(GatewayActivities.gateway_status, "ask for the status")
                continue
            remaining = deadline - workflow.now()
            if remaining <= timedelta(0):
                if cancelled:
                    self._note("still unsettled at the gateway long after the cancel: giving up")
                    return GatewayState.FAILED
                await self._ask(GatewayActivities.cancel_at_gateway, "cancel at expiry")
                # A payment already in flight (SEPA, crypto confirmations) cannot be cancelled: keep watching,
                # less often, so that weeks of polls stay well inside a workflow's history limit.
                cancelled, deadline = True, workflow.now() + order.watch_refunds_for
                poll_every = max(poll_every, SLOW_POLL)
                continue
            try:
                await workflow.wait_condition(
                    lambda: self._gateway_state != GatewayState.PENDING or self._check_gateway,
                    timeout=min(poll_every, remaining),
                    timeout_summary="wait for the gateway",
                )
            except TimeoutError:
                self._check_gateway = True  # no webhook came: webhooks get lost, so ask
        return self._gateway_state

    async def _complete(self, order: CheckoutOrder) -> None:
        await self._record(PaymentRecords.complete_payment, order.payment_id, "mark COMPLETED, unlock the tier")
        self._status = PaymentStatus.COMPLETED
        self._refundable_until = workflow.now() + order.refund_window
        self._note(f"paid: COMPLETED, {order.tier} unlocked")
        await self._email(order, receipt(order, self._gateway_id or ""), "email the receipt")

    async def _listen_for_refunds(self, order: CheckoutOrder) -> None:
        listen_until = workflow.now() + order.watch_refunds_for
        while not self._refund_reported:
            if self._refund_requested:
                try:
                    self._apply(await self._at_gateway(GatewayActivities.refund_at_gateway, "refund"), "refund")
                except ActivityError as err:
                    self._refund_error = str(err.cause or err)
                    self._note(f"refund refused by the gateway: {self._refund_error}")
                finally:
                    self._refund_requested = False
                continue
            try:
                await workflow.wait_condition(
                    lambda: self._refund_reported or self._refund_requested,
                    timeout=max(listen_until - workflow.now(), timedelta(seconds=1)),
                    timeout_summary="listen for refunds",
                )
            except TimeoutError:
                return
        await self._record(PaymentRecords.refund_payment, order.payment_id, "mark REFUNDED, take the tier back")
        self._status = PaymentStatus.REFUNDED
        self._note(f"refunded: REFUNDED, {order.tier} taken back")
        await self._email(order, refund_notice(order), "email the refund notice")

    # --- signals, updates, queries -------------------------------------------------------------------

    @workflow.signal
    def gateway_event(self, event: GatewayEvent) -> None:
        """A verified webhook. Redelivered events are ignored; out-of-order ones cannot undo a later state."""
        if event.event_id in self._seen_events:
            return
        self._seen_events.add(event.event_id)
        if event.state is None:
            self._check_gateway = True
            self._note(f"webhook {event.event_id}: {event.detail}; asking the gateway")
        else:
            self._apply(GatewayStatus(state=event.state, detail=event.detail), f"webhook {event.event_id}")

    @workflow.update
    async def checkout_action(self) -> CheckoutAction:
        """What the frontend does next, as soon as the gateway has created its object."""
        await workflow.wait_condition(lambda: self._action is not None or self._creation_error is not None)
        if self._action is None:
            raise ApplicationError(self._creation_error or "the gateway refused the payment", type="GatewayRefused")
        return self._action

    @workflow.update
    async def request_refund(self) -> PaymentProgress:
        self._refund_requested, self._refund_error = True, None
        await workflow.wait_condition(lambda: not self._refund_requested)
        if self._refund_error is not None:
            raise ApplicationError(self._refund_error, type=REFUND_REFUSED)
        await workflow.wait_condition(lambda: self._status == PaymentStatus.REFUNDED)
        return self.progress()

    @request_refund.validator
    def _refund_allowed(self) -> None:
        """The refund rules, here only: the API maps these rejections to its answers."""
        if self._status == PaymentStatus.REFUNDED or self._refund_reported:
            raise ApplicationError("this payment is already refunded", type=ALREADY_REFUNDED)
        if self._order is not None and self._order.refund_window <= timedelta(0):
            raise ApplicationError(
                "refunds are handled by support on this server; please contact us", type=NOT_REFUNDABLE
            )
        if self._status != PaymentStatus.COMPLETED:
            raise ApplicationError(
                f"only a completed payment can be refunded; this one is {self._status}", type=NOT_REFUNDABLE
            )
        if self._refund_requested:
            raise ApplicationError("a refund of this payment is already in progress", type=NOT_REFUNDABLE)
        if self._refundable_until is None or workflow.now() > self._refundable_until:
            raise ApplicationError("the refund window of this payment has closed", type=NOT_REFUNDABLE)

    @workflow.query
    def progress(self) -> PaymentProgress:
        return PaymentProgress(
            payment_id=self._order.payment_id if self._order else None,
            gateway=self._order.gateway if self._order else None,
            status=self._status,
            gateway_state=self._gateway_state,
            gateway_id=self._gateway_id,
            next_action=self._action if self._status == PaymentStatus.PENDING else None,
            refundable_until=self._refundable_until,
            history=self._history,
        )

    # --- helpers -------------------------------------------------------------------------------------

    def _apply(self, status: GatewayStatus, source: str) -> None:
        """Fold one fact from the gateway into the state. Facts only move forward: a late 'failed' after
        'paid' changes nothing, and a refund implies the payment was made."""
        before = self._gateway_state
        if status.state == GatewayState.REFUNDED:
            self._refund_reported = True
            if before not in (GatewayState.PAID, GatewayState.REFUNDED):
                self._gateway_state = GatewayState.PAID
        elif status.state == GatewayState.PAID and before != GatewayState.REFUNDED:
            self._gateway_state = GatewayState.PAID
        elif status.state in (GatewayState.FAILED, GatewayState.APPROVED) and before in (
            GatewayState.PENDING,
            GatewayState.APPROVED,
        ):
            self._gateway_state = status.state
        self._note(f"{source}: {status.detail} -> {self._gateway_state}")

    def _reference(self) -> GatewayReference:
        assert self._order is not None and self._gateway_id is not None
        return self._order.at_gateway(self._gateway_id)

    async def _at_gateway(self, activity: Callable[..., Any], summary: str) -> GatewayStatus:
        return await workflow.execute_activity_method(
            activity,
            self._reference(),
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=HEARTBEAT,
            retry_policy=GATEWAY_RETRY,
            summary=summary,
        )

    async def _ask(self, activity: Callable[..., Any], summary: str) -> None:
        """Call the gateway and fold in its answer; a refusal is noted, and the next poll asks again."""
        try:
            self._apply(await self._at_gateway(activity, summary), summary)
        except ActivityError as err:
            self._note(f"{summary}: the gateway refused: {err.cause or err}")

    async def _record(self, activity: Callable[..., Any], argument: Any, summary: str) -> None:
        """A database write: idempotent, so retried until it is done."""
        await workflow.execute_activity_method(
            activity, argument, start_to_close_timeout=DATABASE_CALL, retry_policy=RECORD_RETRY, summary=summary
        )

    async def _email(self, order: CheckoutOrder, email: UserEmail, summary: str) -> None:
        old_run = order.email is not None and not workflow.patched(EMAIL_BY_USER_ID)
        await send_to_account(email, order.email if old_run else None, summary)

    def _note(self, what: str) -> None:
        self._history.append(PaymentHistoryEntry(at=workflow.now(), what=what))


def receipt(order: CheckoutOrder, gateway_id: str) -> UserEmail:
    return UserEmail(
        user_id=order.user_id,
        message_id=f"payment-{order.payment_id}-receipt",
        subject=f"Your Statex receipt: {order.tier_name}",
        text=(
            f"Thank you for your payment.\n\n{order.tier_name}: {order.amount_display}\n"
            f"Paid with: {order.gateway}\nPayment: {order.payment_id}\nGateway reference: {gateway_id}\n\n"
            "Your account now has this tier.\n\n-- The Statex team"
        ),
    )


def refund_notice(order: CheckoutOrder) -> UserEmail:
    return UserEmail(
        user_id=order.user_id,
        message_id=f"payment-{order.payment_id}-refund",
        subject=f"Your Statex refund: {order.tier_name}",
        text=(
            f"Your payment {order.payment_id} of {order.amount_display} for {order.tier_name} was refunded.\n"
            f"The tier was removed from your account.\n\n-- The Statex team"
        ),
    )
