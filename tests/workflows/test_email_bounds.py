"""Email within bounds: a mailer that never takes a message costs a workflow a bounded
number of attempts, after which the workflow records it and finishes; nothing waits or retries for ever."""

from __future__ import annotations

import uuid

from stubs import Stubbed
from stubs.payments import checkout_order

from models.enums import GatewayState, PaymentStatus
from models.messages.contact import ContactNotice
from models.messages.payments import GatewayEvent
from workflows.checkout import CheckoutWorkflow
from workflows.checkout import workflow_id as checkout_workflow_id
from workflows.contact import ContactWorkflow
from workflows.contact import workflow_id as contact_workflow_id
from workflows.mail import EMAIL_RETRY


async def test_a_contact_whose_team_email_never_goes_is_recorded_failed_and_ends(stubbed: Stubbed) -> None:
    stubbed.outside.mailer_down = True
    notice = ContactNotice(contact_id=uuid.uuid4(), team_address="team@statex.example")
    progress = await stubbed.client.execute_workflow(
        ContactWorkflow.run, notice, id=contact_workflow_id(notice.contact_id), task_queue=stubbed.task_queue
    )
    assert progress.failure and not progress.team_notified and not progress.sender_confirmed
    # bounded, then given up (the contact's emails are built by their own activity, from the stored message)
    assert len(stubbed.outside.called("send_contact_email")) == EMAIL_RETRY.maximum_attempts
    assert stubbed.outside.called("mark_contact_failed") == [notice.contact_id]
    assert stubbed.outside.called("mark_contact_notified") == []


async def test_a_receipt_that_never_goes_does_not_fail_the_payment(stubbed: Stubbed) -> None:
    stubbed.outside.mailer_down = True
    order = checkout_order()
    handle = await stubbed.client.start_workflow(
        CheckoutWorkflow.run, order, id=checkout_workflow_id(order.payment_id), task_queue=stubbed.task_queue
    )
    await handle.execute_update(CheckoutWorkflow.checkout_action)
    await handle.signal(
        CheckoutWorkflow.gateway_event, GatewayEvent(event_id="evt", state=GatewayState.PAID, detail="paid")
    )
    result = await handle.result()  # the refund-watching month, skipped: the workflow lived on after the email
    assert result.status == PaymentStatus.COMPLETED
    assert len(stubbed.outside.emails()) == EMAIL_RETRY.maximum_attempts
