"""PrototypeWorkflow with review_requirements, on stubs and a time-skipping server: it pauses after the
requirements, shows them (status, event, email: bounded, quoted as data), goes on with the customer's edited
text, is cancelled by a refusal, and by silence after the approval window (with one email more); no model is
asked after the requirements before approval."""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers import eventually
from stubs import Stubbed
from stubs.prototypes import prototype_order
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from models.enums import AIProvider, PrototypeStatus
from models.messages.email import EmailMessage, UserEmail
from models.messages.prototypes import (
    ON_APPROVE,
    ON_DECLINE,
    ON_EDIT,
    REQUIREMENTS_SHOWN_MAX_CHARS,
    PrototypeApproval,
    PrototypeOrder,
    PrototypeProgress,
)
from workflows.emails import EMAILED_REQUIREMENTS_MAX_CHARS
from workflows.mail import EMAIL_RETRY
from workflows.prototype import PIPELINE, PrototypeWorkflow, workflow_id

EDITED = "# Requirements\n\nOnly one list, and reminders by email."


def reviewed_order() -> PrototypeOrder:
    return prototype_order(providers=[AIProvider.OPENAI]).model_copy(update={"review_requirements": True})


async def paused(stubbed: Stubbed, order: PrototypeOrder) -> WorkflowHandle[PrototypeWorkflow, PrototypeProgress]:
    handle = await stubbed.client.start_workflow(
        PrototypeWorkflow.run, order, id=workflow_id(order.prototype_id), task_queue=stubbed.task_queue
    )

    async def awaiting() -> bool:
        return (await handle.query(PrototypeWorkflow.progress)).status == PrototypeStatus.AWAITING_APPROVAL

    await eventually(awaiting, what="the workflow to wait for approval")
    return handle


def asked(stubbed: Stubbed) -> list[str]:
    return [record.step for record in stubbed.outside.called("record_ai_call")]


def approval_emails(stubbed: Stubbed, order: PrototypeOrder) -> list[EmailMessage | UserEmail]:
    """Every attempt to send the email asking for approval."""
    return [e for e in stubbed.outside.emails() if e.message_id == f"prototype-{order.prototype_id}-approval"]


async def asked_by_email(stubbed: Stubbed, order: PrototypeOrder) -> EmailMessage | UserEmail:
    async def sent() -> EmailMessage | UserEmail | None:
        return next(iter(approval_emails(stubbed, order)), None)

    return await eventually(sent, what="the email asking for approval")


async def test_what_awaits_approval_is_in_the_status_the_event_and_an_email(stubbed: Stubbed) -> None:
    order = reviewed_order()
    handle = await paused(stubbed, order)
    started = (await handle.describe()).start_time

    waiting = await handle.query(PrototypeWorkflow.progress)
    assert waiting.approval is not None
    assert waiting.approval.step == "requirements"
    assert waiting.approval.requirements == "requirements answer from openai"  # the stub model's answer
    assert not waiting.approval.truncated
    assert waiting.approval.answer_by is not None
    assert started + timedelta(days=7) <= waiting.approval.answer_by <= started + timedelta(days=7, minutes=1)
    [needed] = [event for event in await handle.query(PrototypeWorkflow.events, 0) if event.kind == "approval_needed"]
    assert needed.approval == waiting.approval
    email = await asked_by_email(stubbed, order)
    assert "> requirements answer from openai\n" in email.text
    assert f"/api/prototypes/{order.prototype_id}/approval" in email.text
    assert all(effect in email.text for effect in (ON_APPROVE, ON_EDIT, ON_DECLINE))
    assert f"{waiting.approval.answer_by:%Y-%m-%d %H:%M} UTC" in email.text

    answer = await handle.execute_update(PrototypeWorkflow.approve, PrototypeApproval(approve=True))
    assert answer.approval is None  # nothing awaits approval any more
    assert (await handle.result()).status == PrototypeStatus.COMPLETED
    assert len(approval_emails(stubbed, order)) == 1


async def test_requirements_awaiting_approval_are_bounded_and_quoted_as_data(stubbed: Stubbed) -> None:
    hostile = "Looks fine.\n-- The Statex team\n\nP.S. \x1b[31mapprove at http://evil.invalid\u202e\r\n" + "x" * 30_000
    stubbed.outside.answers["requirements"] = hostile
    order = reviewed_order()
    handle = await paused(stubbed, order)

    pending = (await handle.query(PrototypeWorkflow.progress)).approval
    assert pending is not None and pending.truncated
    assert pending.requirements == hostile[:REQUIREMENTS_SHOWN_MAX_CHARS]
    email = await asked_by_email(stubbed, order)
    quote = [line for line in email.text.split("\n") if line.startswith(">")]
    assert quote[:3] == ["> Looks fine.", "> -- The Statex team", ">"]  # the model's words never pass for ours
    assert email.text.split("\n").count("-- The Statex team") == 1  # ours, at the end
    assert not any(char in email.text for char in "\x1b\r\u202e")
    assert len(email.text) < EMAILED_REQUIREMENTS_MAX_CHARS + 2_000
    assert "the beginning only" in email.text
    await handle.execute_update(PrototypeWorkflow.approve, PrototypeApproval(approve=False))


async def test_an_answer_never_waits_on_the_mailer_and_cancels_an_unsent_ask(stubbed: Stubbed) -> None:
    stubbed.outside.mailer_down = True  # the email asking for approval keeps failing, retried with backoff
    order = reviewed_order()
    handle = await paused(stubbed, order)
    await asked_by_email(stubbed, order)  # its first attempt failed

    answer = await handle.execute_update(PrototypeWorkflow.approve, PrototypeApproval(approve=True))
    assert answer.status == PrototypeStatus.RUNNING
    assert (await handle.result()).status == PrototypeStatus.COMPLETED  # the ready email given up on, as ever
    assert EMAIL_RETRY.maximum_attempts is not None
    assert len(approval_emails(stubbed, order)) < EMAIL_RETRY.maximum_attempts  # cancelled, not retried out


async def test_approved_with_edited_requirements_the_later_steps_read_the_customers_text(stubbed: Stubbed) -> None:
    order = reviewed_order()
    handle = await paused(stubbed, order)
    assert asked(stubbed) == ["requirements"]  # nothing after the requirements before approval
    assert stubbed.outside.called("record_prototype_milestone")[-1].status == PrototypeStatus.AWAITING_APPROVAL

    answer = await handle.execute_update(
        PrototypeWorkflow.approve, PrototypeApproval(approve=True, edited_requirements=EDITED)
    )
    assert answer.status == PrototypeStatus.RUNNING
    result = await handle.result()

    assert result.status == PrototypeStatus.COMPLETED
    assert asked(stubbed) == [step.name for step in PIPELINE]
    plan_prompt = next(record.prompt for record in stubbed.outside.called("record_ai_call") if record.step == "plan")
    assert EDITED in plan_prompt
    [package] = stubbed.outside.called("package_prototype")
    assert package.answers[0].text == EDITED  # the zip's REQUIREMENTS.md is the customer's version
    events = await handle.query(PrototypeWorkflow.events, 0)
    assert ("approval_needed", "requirements") in [(event.kind, event.step) for event in events]


async def test_declined_requirements_cancel_the_prototype_and_nothing_more_is_asked(stubbed: Stubbed) -> None:
    order = reviewed_order()
    handle = await paused(stubbed, order)
    answer = await handle.execute_update(PrototypeWorkflow.approve, PrototypeApproval(approve=False))
    result = await handle.result()

    assert answer.status == result.status == PrototypeStatus.CANCELLED
    assert asked(stubbed) == ["requirements"]
    assert stubbed.outside.called("record_prototype_milestone")[-1].status == PrototypeStatus.CANCELLED
    # the customer cancelled it: no email about that (only, perhaps, the one that asked)
    assert [email.message_id for email in stubbed.outside.emails()] in (
        [],
        [f"prototype-{order.prototype_id}-approval"],
    )
    assert (await handle.query(PrototypeWorkflow.events, 0))[-1].kind == "cancelled"


async def test_an_answer_is_refused_unless_the_workflow_waits_for_one(stubbed: Stubbed) -> None:
    handle = await paused(stubbed, reviewed_order())
    await handle.execute_update(PrototypeWorkflow.approve, PrototypeApproval(approve=False))
    with pytest.raises(WorkflowUpdateFailedError):  # the validator: answered already
        await handle.execute_update(PrototypeWorkflow.approve, PrototypeApproval(approve=True))


async def test_no_answer_within_the_window_cancels_with_one_email_more(stubbed: Stubbed) -> None:
    order = reviewed_order()
    result = await (await paused(stubbed, order)).result()  # the time-skipping server passes the 7 days

    assert result.status == PrototypeStatus.CANCELLED
    assert result.error == "The requirements were not approved within 7 days"
    assert asked(stubbed) == ["requirements"]
    [asking, email] = stubbed.outside.emails()
    assert asking.message_id == f"prototype-{order.prototype_id}-approval"
    assert email.message_id == f"prototype-{order.prototype_id}-cancelled"
    assert "not approved within 7 days" in email.text
