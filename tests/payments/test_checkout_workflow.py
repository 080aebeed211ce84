"""CheckoutWorkflow's paths with stubbed gateway, records and email: paid, failed, expired, refunded (asked
for or reported), and webhooks that come twice or out of order."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from helpers import eventually
from stubs import Stubbed
from stubs.payments import checkout_order
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import CancelledError

from models.enums import GatewayState, PaymentStatus
from models.messages.payments import CheckoutOrder, GatewayEvent, PaymentProgress
from workflows.checkout import CheckoutWorkflow, workflow_id

Checkout = WorkflowHandle[CheckoutWorkflow, PaymentProgress]


async def start(stubbed: Stubbed, order: CheckoutOrder) -> Checkout:
    """Started, and created at the (stub) gateway: the frontend has its next step."""
    handle = await stubbed.client.start_workflow(
        CheckoutWorkflow.run, order, id=workflow_id(order.payment_id), task_queue=stubbed.task_queue
    )
    action = await handle.execute_update(CheckoutWorkflow.checkout_action)
    assert action.kind == "redirect" and action.redirect_url
    return handle


def event(event_id: str, state: GatewayState | None, detail: str = "stub event") -> GatewayEvent:
    return GatewayEvent(event_id=event_id, state=state, detail=detail)


async def status_is(handle: Checkout, status: PaymentStatus) -> bool:
    return (await handle.query(CheckoutWorkflow.progress)).status == status


def receipt_id(order: CheckoutOrder) -> str:
    return f"payment-{order.payment_id}-receipt"


def refund_id(order: CheckoutOrder) -> str:
    return f"payment-{order.payment_id}-refund"


async def test_paid_webhook_completes_the_payment_and_emails_one_receipt(stubbed: Stubbed) -> None:
    order = checkout_order()
    handle = await start(stubbed, order)

    await handle.signal(CheckoutWorkflow.gateway_event, event("evt_paid", GatewayState.PAID, "succeeded"))
    result = await handle.result()  # after the refund-watching month, skipped

    assert result.status == PaymentStatus.COMPLETED
    assert result.gateway_state == GatewayState.PAID
    assert result.refundable_until is not None
    outside = stubbed.outside
    assert outside.called("complete_payment") == [order.payment_id]
    assert outside.called("fail_payment") == []
    assert [email.message_id for email in outside.emails()] == [receipt_id(order)]
    assert outside.called("attach_gateway_object")[0].session.gateway_id == result.gateway_id


async def test_failed_webhook_marks_the_payment_failed_without_email(stubbed: Stubbed) -> None:
    order = checkout_order()
    handle = await start(stubbed, order)

    await handle.signal(CheckoutWorkflow.gateway_event, event("evt_failed", GatewayState.FAILED, "card_declined"))
    result = await handle.result()

    assert result.status == PaymentStatus.FAILED
    assert stubbed.outside.called("fail_payment") == [order.payment_id]
    assert stubbed.outside.called("complete_payment") == []
    assert stubbed.outside.emails() == []


async def test_gateway_refusing_the_checkout_fails_it_and_tells_the_frontend(stubbed: Stubbed) -> None:
    stubbed.outside.gateway_refuses = True
    order = checkout_order()
    handle = await stubbed.client.start_workflow(
        CheckoutWorkflow.run, order, id=workflow_id(order.payment_id), task_queue=stubbed.task_queue
    )

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(CheckoutWorkflow.checkout_action)

    assert "rejected the amount" in str(refused.value.cause)
    assert (await handle.result()).status == PaymentStatus.FAILED
    assert stubbed.outside.called("fail_payment") == [order.payment_id]


async def test_without_webhook_the_gateway_is_polled_then_cancelled_at_expiry(stubbed: Stubbed) -> None:
    order = checkout_order(expires_after=timedelta(hours=1), poll_every=timedelta(minutes=10))
    handle = await start(stubbed, order)

    result = await handle.result()  # no webhook ever comes: the expiry timer fires

    assert result.status == PaymentStatus.FAILED
    polls = stubbed.outside.called("gateway_status")
    assert len(polls) == order.expires_after // order.poll_every, "one poll per interval until expiry"
    assert [call.gateway_id for call in stubbed.outside.called("cancel_at_gateway")] == [result.gateway_id]
    assert stubbed.outside.called("fail_payment") == [order.payment_id]
    assert stubbed.outside.emails() == []


async def test_payment_made_just_before_the_cancel_at_expiry_completes(stubbed: Stubbed) -> None:
    stubbed.outside.cancel_answer = GatewayState.PAID  # the gateway: too late to cancel, it is paid
    order = checkout_order(expires_after=timedelta(minutes=30))
    handle = await start(stubbed, order)

    result = await handle.result()

    assert result.status == PaymentStatus.COMPLETED
    assert stubbed.outside.called("complete_payment") == [order.payment_id]
    assert [email.message_id for email in stubbed.outside.emails()] == [receipt_id(order)]


async def test_refund_requested_by_the_customer_is_made_at_the_gateway(stubbed: Stubbed) -> None:
    order = checkout_order()
    handle = await start(stubbed, order)
    await handle.signal(CheckoutWorkflow.gateway_event, event("evt_paid", GatewayState.PAID))
    await eventually(lambda: status_is(handle, PaymentStatus.COMPLETED), what="the payment to complete")

    await handle.execute_update(CheckoutWorkflow.request_refund)

    assert (await handle.query(CheckoutWorkflow.progress)).status == PaymentStatus.REFUNDED
    result = await handle.result()
    assert result.status == PaymentStatus.REFUNDED
    outside = stubbed.outside
    assert [call.gateway_id for call in outside.called("refund_at_gateway")] == [result.gateway_id]
    assert outside.called("refund_payment") == [order.payment_id]
    assert [email.message_id for email in outside.emails()] == [receipt_id(order), refund_id(order)]


async def test_refund_of_an_unpaid_payment_is_rejected(stubbed: Stubbed) -> None:
    handle = await start(stubbed, checkout_order())

    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(CheckoutWorkflow.request_refund)

    assert stubbed.outside.called("refund_at_gateway") == []
    await handle.signal(CheckoutWorkflow.gateway_event, event("evt_failed", GatewayState.FAILED))
    assert (await handle.result()).status == PaymentStatus.FAILED


async def test_refund_reported_by_webhook_takes_the_tier_back(stubbed: Stubbed) -> None:
    order = checkout_order()
    handle = await start(stubbed, order)
    await handle.signal(CheckoutWorkflow.gateway_event, event("evt_paid", GatewayState.PAID))
    await eventually(lambda: status_is(handle, PaymentStatus.COMPLETED), what="the payment to complete")

    await handle.signal(CheckoutWorkflow.gateway_event, event("evt_refunded", GatewayState.REFUNDED))
    result = await handle.result()

    assert result.status == PaymentStatus.REFUNDED
    outside = stubbed.outside
    assert outside.called("refund_at_gateway") == [], "the dashboard made the refund; we only record it"
    assert outside.called("refund_payment") == [order.payment_id]
    assert [email.message_id for email in outside.emails()] == [receipt_id(order), refund_id(order)]


async def test_redelivered_and_stale_webhooks_change_nothing(stubbed: Stubbed) -> None:
    order = checkout_order()
    handle = await start(stubbed, order)

    untrusted = event("evt_processing", None, "payment_intent.processing")
    await handle.signal(CheckoutWorkflow.gateway_event, untrusted)
    await handle.signal(CheckoutWorkflow.gateway_event, untrusted)  # redelivered: ignored, not asked twice
    paid = event("evt_paid", GatewayState.PAID, "succeeded")
    await handle.signal(CheckoutWorkflow.gateway_event, paid)
    await handle.signal(CheckoutWorkflow.gateway_event, paid)
    await handle.signal(CheckoutWorkflow.gateway_event, event("evt_failed_earlier", GatewayState.FAILED))
    result = await handle.result()

    assert result.status == PaymentStatus.COMPLETED
    assert result.gateway_state == GatewayState.PAID, "a stale 'failed' after 'paid' is ignored"
    outside = stubbed.outside
    assert len(outside.called("gateway_status")) == 1
    assert outside.called("complete_payment") == [order.payment_id]
    assert outside.called("fail_payment") == []
    assert [email.message_id for email in outside.emails()] == [receipt_id(order)]
    assert sum("evt_paid" in entry.what for entry in result.history) == 1


async def test_refund_webhook_before_the_payment_webhook_ends_refunded(stubbed: Stubbed) -> None:
    completing = asyncio.Event()
    stubbed.outside.held["complete_payment"] = completing  # both webhooks arrive while the row is written
    order = checkout_order()
    handle = await start(stubbed, order)

    await handle.signal(CheckoutWorkflow.gateway_event, event("evt_refunded", GatewayState.REFUNDED))
    await eventually(lambda: _asked(stubbed, "complete_payment"), what="the payment to be completing")
    await handle.signal(CheckoutWorkflow.gateway_event, event("evt_paid", GatewayState.PAID))
    completing.set()
    result = await handle.result()

    assert result.status == PaymentStatus.REFUNDED
    assert result.gateway_state == GatewayState.PAID
    names = stubbed.outside.names()
    assert names.index("complete_payment") < names.index("refund_payment")
    assert stubbed.outside.called("refund_payment") == [order.payment_id]
    assert [email.message_id for email in stubbed.outside.emails()] == [receipt_id(order), refund_id(order)]


async def _asked(stubbed: Stubbed, name: str) -> bool:
    return bool(stubbed.outside.called(name))


async def test_a_cancelled_checkout_is_cancelled_at_the_gateway_and_marked_failed(stubbed: Stubbed) -> None:
    """What an account's erasure does to its pending checkout: nothing stays payable at the gateway."""
    order = checkout_order()
    handle = await start(stubbed, order)

    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    assert isinstance(failure.value.cause, CancelledError)
    assert [call.payment_id for call in stubbed.outside.called("cancel_at_gateway")] == [order.payment_id]
    assert stubbed.outside.called("fail_payment") == [order.payment_id]
    assert stubbed.outside.emails() == []
