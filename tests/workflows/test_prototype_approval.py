"""PrototypeWorkflow with review_requirements, on stubs and a time-skipping server: it pauses after the
requirements, goes on with the customer's edited text, is cancelled by a refusal, and by silence after the
approval window (with one email); no model is asked after the requirements before approval."""

from __future__ import annotations

import pytest
from helpers import eventually
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from workflow_stubs import Stubbed, prototype_order

from models.enums import AITier, PrototypeStatus
from models.messages.prototypes import PrototypeApproval, PrototypeOrder, PrototypeProgress
from workflows.prototype import PIPELINE, PrototypeWorkflow, workflow_id

EDITED = "# Requirements\n\nOnly one list, and reminders by email."


def reviewed_order() -> PrototypeOrder:
    return prototype_order(providers=[AITier.OPENAI]).model_copy(update={"review_requirements": True})


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
    handle = await paused(stubbed, reviewed_order())
    answer = await handle.execute_update(PrototypeWorkflow.approve, PrototypeApproval(approve=False))
    result = await handle.result()

    assert answer.status == result.status == PrototypeStatus.CANCELLED
    assert asked(stubbed) == ["requirements"]
    assert stubbed.outside.called("record_prototype_milestone")[-1].status == PrototypeStatus.CANCELLED
    assert stubbed.outside.emails() == []  # the customer cancelled it: no email needed
    assert (await handle.query(PrototypeWorkflow.events, 0))[-1].kind == "cancelled"


async def test_an_answer_is_refused_unless_the_workflow_waits_for_one(stubbed: Stubbed) -> None:
    handle = await paused(stubbed, reviewed_order())
    await handle.execute_update(PrototypeWorkflow.approve, PrototypeApproval(approve=False))
    with pytest.raises(WorkflowUpdateFailedError):  # the validator: answered already
        await handle.execute_update(PrototypeWorkflow.approve, PrototypeApproval(approve=True))


async def test_no_answer_within_the_window_cancels_with_one_email(stubbed: Stubbed) -> None:
    order = reviewed_order()
    result = await (await paused(stubbed, order)).result()  # the time-skipping server passes the 7 days

    assert result.status == PrototypeStatus.CANCELLED
    assert result.error == "The requirements were not approved within 7 days"
    assert asked(stubbed) == ["requirements"]
    [email] = stubbed.outside.emails()
    assert email.message_id == f"prototype-{order.prototype_id}-cancelled"
    assert "not approved within 7 days" in email.text
