"""PrototypeWorkflow's paths with stubbed providers, records, packaging and email: made, a provider that
refuses, a provider down (the next one answers), every provider down, and storage down."""

from __future__ import annotations

import pytest
from conftest import Stubbed
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ActivityError, ApplicationError
from workflow_stubs import DOWNLOAD_TOKEN, prototype_order

from activities.ai.errors import AIFailure
from activities.storage import storage_key
from models.enums import AITier, PrototypeStatus
from models.messages.files import RetentionStatus
from models.messages.prototypes import PrototypeMilestone, PrototypeOrder, PrototypeProgress
from workflows.prototype import PIPELINE, PrototypeWorkflow, result_file_id, workflow_id
from workflows.retention import FileRetentionWorkflow
from workflows.retention import workflow_id as retention_workflow_id

STEPS = [step.name for step in PIPELINE]


async def start(stubbed: Stubbed, order: PrototypeOrder) -> WorkflowHandle[PrototypeWorkflow, PrototypeProgress]:
    return await stubbed.client.start_workflow(
        PrototypeWorkflow.run, order, id=workflow_id(order.prototype_id), task_queue=stubbed.task_queue
    )


async def failure_of(stubbed: Stubbed, order: PrototypeOrder) -> BaseException:
    """The workflow's own failure (its cause), once it has failed."""
    handle = await start(stubbed, order)
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert failed.value.cause is not None
    return failed.value.cause


def last_milestone(stubbed: Stubbed) -> PrototypeMilestone:
    milestone: PrototypeMilestone = stubbed.outside.called("record_prototype_milestone")[-1]
    return milestone


def assert_told_why(stubbed: Stubbed, order: PrototypeOrder, reason: str) -> None:
    """One email, the failure notice, giving the reason; the row FAILED with the same reason."""
    emails = stubbed.outside.emails()
    assert [email.message_id for email in emails] == [f"prototype-{order.prototype_id}-failed"]
    assert reason in emails[0].text
    milestone = last_milestone(stubbed)
    assert milestone.status == PrototypeStatus.FAILED
    assert milestone.error is not None and reason in milestone.error


async def test_prototype_is_made_packaged_and_its_link_emailed(stubbed: Stubbed) -> None:
    order = prototype_order(providers=[AITier.OPENAI])
    result = await (await start(stubbed, order)).result()

    assert result.status == PrototypeStatus.COMPLETED
    assert result.steps_done == [*STEPS, "package"]
    assert result.progress_percent == 100
    assert result.file_id == result_file_id(order.prototype_id)
    outside = stubbed.outside
    [package] = outside.called("package_prototype")
    assert [answer.step for answer in package.answers] == STEPS
    assert [record.step for record in outside.called("record_ai_call")] == STEPS
    assert last_milestone(stubbed).status == PrototypeStatus.COMPLETED
    [ready] = outside.emails()
    assert ready.message_id == f"prototype-{order.prototype_id}-ready"
    assert f"/api/files/{result.file_id}?token={DOWNLOAD_TOKEN}" in ready.text


async def test_voice_message_is_transcribed_and_becomes_the_idea(stubbed: Stubbed) -> None:
    order = prototype_order(providers=[AITier.OPENAI], voice=True)
    result = await (await start(stubbed, order)).result()

    assert result.status == PrototypeStatus.COMPLETED
    assert result.steps_done == ["transcription", *STEPS, "package"]
    assert len(stubbed.outside.called("openai_transcribe")) == 1
    assert result.idea == stubbed.outside.called("package_prototype")[0].idea != ""


async def test_provider_refusal_fails_the_prototype_without_asking_the_next(stubbed: Stubbed) -> None:
    stubbed.outside.providers_refusing = {AITier.OPENAI}
    order = prototype_order(providers=[AITier.OPENAI, AITier.OFFLINE])

    failure = await failure_of(stubbed, order)

    assert isinstance(failure, ApplicationError) and failure.type == AIFailure.CONTENT_REFUSED
    outside = stubbed.outside
    assert len(outside.called("openai_chat")) == 1, "a refusal is not retried"
    assert outside.called("offline_chat") == [], "a refusal is the provider's verdict, not an outage"
    assert outside.called("package_prototype") == []
    assert last_milestone(stubbed).current_step == STEPS[0]
    assert_told_why(stubbed, order, "content policy")


async def test_provider_down_hands_over_to_the_next_after_its_retries(stubbed: Stubbed) -> None:
    stubbed.outside.providers_down = {AITier.OPENAI}
    order = prototype_order(providers=[AITier.OPENAI, AITier.OFFLINE])

    result = await (await start(stubbed, order)).result()

    assert result.status == PrototypeStatus.COMPLETED
    attempts = order.policy.retry_maximum_attempts
    assert len(stubbed.outside.called("openai_chat")) == attempts * len(PIPELINE)
    assert [call.step for call in stubbed.outside.called("offline_chat")] == STEPS
    assert [record.reply.tier for record in stubbed.outside.called("record_ai_call")] == [AITier.OFFLINE] * 4


async def test_all_providers_down_fails_the_prototype_and_says_why(stubbed: Stubbed) -> None:
    stubbed.outside.providers_down = {AITier.OPENAI, AITier.OFFLINE}
    order = prototype_order(providers=[AITier.OPENAI, AITier.OFFLINE])

    failure = await failure_of(stubbed, order)

    assert isinstance(failure, ApplicationError) and failure.type == AIFailure.ALL_PROVIDERS_DOWN
    attempts = order.policy.retry_maximum_attempts
    assert len(stubbed.outside.called("openai_chat")) == attempts
    assert len(stubbed.outside.called("offline_chat")) == attempts
    assert stubbed.outside.called("record_ai_call") == []
    assert stubbed.outside.called("package_prototype") == []
    assert_told_why(stubbed, order, "No AI provider answered")


async def test_storage_down_fails_the_prototype_and_deletes_what_was_stored(stubbed: Stubbed) -> None:
    stubbed.outside.storage_down = True
    order = prototype_order(providers=[AITier.OPENAI])

    failure = await failure_of(stubbed, order)  # retried until the packaging deadline (skipped), then failed

    assert isinstance(failure, ActivityError)
    assert isinstance(failure.cause, ApplicationError) and failure.cause.type == "StorageUnavailable"
    assert len(stubbed.outside.called("package_prototype")) > 1, "storage errors are retried"
    assert_told_why(stubbed, order, "storage unreachable")
    file_id = result_file_id(order.prototype_id)
    retention = stubbed.client.get_workflow_handle_for(FileRetentionWorkflow.run, retention_workflow_id(file_id))
    status: RetentionStatus = await retention.result()  # told to delete now, not in 24 hours
    assert status.deleted_early
    assert stubbed.outside.called("delete_object") == [storage_key(file_id)]
    assert stubbed.outside.called("mark_file_deleted") == [file_id]
