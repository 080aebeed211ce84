"""PrototypeWorkflow's paths with stubbed providers, records, packaging and email: made, a provider that
refuses, a provider down (the next one answers), every provider down, and storage down."""

from __future__ import annotations

import pytest
from helpers import png
from stubs import Stubbed
from stubs.ai import STUB_COST_MICROS
from stubs.files import DOWNLOAD_TOKEN, PREVIEW_TOKEN
from stubs.prototypes import NO_BROWSER, prototype_order
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ActivityError, ApplicationError

from activities.ai.errors import AIFailure
from activities.storage import storage_key
from models.enums import AIProvider, PrototypeStatus
from models.messages.email import UserEmail
from models.messages.files import RetentionStatus
from models.messages.prototypes import (
    PreviewImage,
    PrototypeMilestone,
    PrototypeOrder,
    PrototypeProgress,
    StoredPreview,
)
from workflows.prototype import PIPELINE, PrototypeWorkflow, result_file_id, workflow_id
from workflows.prototype_steps import preview_file_id
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
    order = prototype_order(providers=[AIProvider.OPENAI])
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
    # to the account by its id: the order carries no address, the email activity reads it
    assert order.email is None and outside.called("send_user_email") == [ready]
    assert isinstance(ready, UserEmail) and ready.user_id == order.user_id


async def test_voice_message_is_transcribed_and_becomes_the_idea(stubbed: Stubbed) -> None:
    order = prototype_order(providers=[AIProvider.OPENAI], voice=True)
    result = await (await start(stubbed, order)).result()

    assert result.status == PrototypeStatus.COMPLETED
    assert result.steps_done == ["transcription", *STEPS, "package"]
    assert len(stubbed.outside.called("openai_transcribe")) == 1
    assert result.idea == stubbed.outside.called("package_prototype")[0].idea != ""


async def test_provider_refusal_fails_the_prototype_without_asking_the_next(stubbed: Stubbed) -> None:
    stubbed.outside.providers_refusing = {AIProvider.OPENAI}
    order = prototype_order(providers=[AIProvider.OPENAI, AIProvider.OFFLINE])

    failure = await failure_of(stubbed, order)

    assert isinstance(failure, ApplicationError) and failure.type == AIFailure.CONTENT_REFUSED
    outside = stubbed.outside
    assert len(outside.called("openai_chat")) == 1, "a refusal is not retried"
    assert outside.called("offline_chat") == [], "a refusal is the provider's verdict, not an outage"
    assert outside.called("package_prototype") == []
    assert last_milestone(stubbed).current_step == STEPS[0]
    assert_told_why(stubbed, order, "content policy")


async def test_provider_down_hands_over_to_the_next_after_its_retries(stubbed: Stubbed) -> None:
    stubbed.outside.providers_down = {AIProvider.OPENAI}
    order = prototype_order(providers=[AIProvider.OPENAI, AIProvider.OFFLINE])

    result = await (await start(stubbed, order)).result()

    assert result.status == PrototypeStatus.COMPLETED
    attempts = order.policy.retry_maximum_attempts
    assert len(stubbed.outside.called("openai_chat")) == attempts * len(PIPELINE)
    asked = [call.step for call in stubbed.outside.called("offline_chat")]  # the code and tests calls race
    assert sorted(asked, key=STEPS.index) == STEPS
    assert [record.step for record in stubbed.outside.called("record_ai_call")] == STEPS
    assert [record.reply.tier for record in stubbed.outside.called("record_ai_call")] == [AIProvider.OFFLINE] * len(
        PIPELINE
    )


async def test_all_providers_down_fails_the_prototype_and_says_why(stubbed: Stubbed) -> None:
    stubbed.outside.providers_down = {AIProvider.OPENAI, AIProvider.OFFLINE}
    order = prototype_order(providers=[AIProvider.OPENAI, AIProvider.OFFLINE])

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
    order = prototype_order(providers=[AIProvider.OPENAI])

    failure = await failure_of(stubbed, order)  # retried until the packaging deadline (skipped), then failed

    assert isinstance(failure, ActivityError)
    assert isinstance(failure.cause, ApplicationError) and failure.cause.type == "StorageUnreachable"
    assert len(stubbed.outside.called("package_prototype")) > 1, "storage errors are retried"
    assert_told_why(stubbed, order, "storage unreachable")
    file_id = result_file_id(order.prototype_id)
    retention = stubbed.client.get_workflow_handle_for(FileRetentionWorkflow.run, retention_workflow_id(file_id))
    status: RetentionStatus = await retention.result()  # told to delete now, not in 24 hours
    assert status.deleted_early
    assert stubbed.outside.called("delete_object") == [storage_key(file_id)]
    assert stubbed.outside.called("mark_file_deleted") == [file_id]


# --- verification in the sandbox and the fix loop ------------------------------------------------------------


async def test_code_that_fails_its_checks_goes_back_once_with_the_errors_then_is_verified(stubbed: Stubbed) -> None:
    stubbed.outside.verifications_failing = 1
    order = prototype_order(providers=[AIProvider.OPENAI])
    result = await (await start(stubbed, order)).result()

    assert (result.status, result.verified, result.fix_rounds) == (PrototypeStatus.COMPLETED, True, 1)
    assert result.steps_done == [*STEPS, "package"]  # the fix round belongs to the code step
    outside = stubbed.outside
    assert [request.round for request in outside.called("verify_code")] == [0, 1]
    assert [len(request.code_answers) for request in outside.called("verify_code")] == [1, 2]
    assert [record.step for record in outside.called("record_ai_call")] == [
        "requirements",
        "plan",
        "code",
        "tests",
        "fix-1",
        "review",
    ]
    [fix_call] = [call for call in outside.called("openai_chat") if call.step == "fix"]
    assert "compile main.py:\nSyntaxError: invalid syntax" in fix_call.prompt
    assert result.cost_usd_micros == 6 * STUB_COST_MICROS  # five agents and the fix round, each costed
    [package] = outside.called("package_prototype")
    assert package.verification is not None and package.verification.passed and package.fix_rounds == 1
    assert [answer.step for answer in package.answers] == ["requirements", "plan", "code", "tests", "fix-1", "review"]
    assert last_milestone(stubbed).verified is True and last_milestone(stubbed).fix_rounds == 1
    [ready] = outside.emails()
    assert "Verified: the code passed every check in the sandbox after 1 fix round." in ready.text


async def test_code_still_failing_after_the_last_round_completes_unverified_and_says_so(stubbed: Stubbed) -> None:
    stubbed.outside.verifications_failing = 100
    order = prototype_order(providers=[AIProvider.OPENAI]).model_copy(update={"fix_rounds": 2})
    result = await (await start(stubbed, order)).result()

    assert (result.status, result.verified, result.fix_rounds) == (PrototypeStatus.COMPLETED, False, 2)
    outside = stubbed.outside
    assert len(outside.called("verify_code")) == 3  # the answer, then after each of the two rounds
    assert [record.call_key for record in outside.called("record_ai_call")][4:6] == [
        f"prototype-{order.prototype_id}-fix-1",
        f"prototype-{order.prototype_id}-fix-2",
    ]
    [package] = outside.called("package_prototype")
    assert package.verification is not None and not package.verification.passed
    milestone = last_milestone(stubbed)
    assert (milestone.status, milestone.verified, milestone.fix_rounds) == (PrototypeStatus.COMPLETED, False, 2)
    assert milestone.verification is not None and milestone.verification.round == 2
    [ready] = outside.emails()
    assert "NOT verified: the code still fails checks in the sandbox after 2 fix rounds." in ready.text


async def test_no_fix_rounds_configured_means_one_check_and_an_honest_verdict(stubbed: Stubbed) -> None:
    stubbed.outside.verifications_failing = 100
    order = prototype_order(providers=[AIProvider.OPENAI]).model_copy(update={"fix_rounds": 0})
    result = await (await start(stubbed, order)).result()
    assert (result.verified, result.fix_rounds) == (False, 0)
    assert len(stubbed.outside.called("verify_code")) == 1
    assert "fix" not in [record.step for record in stubbed.outside.called("record_ai_call")]


# --- the agents of a stage at the same time ------------------------------------------------------------------


async def test_the_code_and_tests_agents_are_asked_at_the_same_time_and_recorded_apart(stubbed: Stubbed) -> None:
    stubbed.outside.together = {"code", "tests"}  # neither answers until both are in flight (or fails, alone)
    order = prototype_order(providers=[AIProvider.OPENAI])
    handle = await start(stubbed, order)
    result = await handle.result()

    assert result.status == PrototypeStatus.COMPLETED and result.steps_done == [*STEPS, "package"]
    assert stubbed.outside.arrived == {"code", "tests"}
    records = {record.step: record for record in stubbed.outside.called("record_ai_call")}
    assert records["code"].call_key != records["tests"].call_key == f"prototype-{order.prototype_id}-tests"
    assert records["code"].reply.text == "code answer from openai" and records["tests"].reply.text.startswith("tests")
    assert records["code"].reply.cost_usd_micros == records["tests"].reply.cost_usd_micros == STUB_COST_MICROS
    assert result.cost_usd_micros == len(PIPELINE) * STUB_COST_MICROS
    [verified] = stubbed.outside.called("verify_code")  # the code and its tests, checked together
    assert "code answer from openai" in verified.code_answers[0] and "tests answer" in verified.code_answers[0]
    [review] = [call for call in stubbed.outside.called("openai_chat") if call.step == "review"]
    assert "code answer from openai" in review.prompt and "tests answer from openai" in review.prompt

    # In the history (what the Temporal UI shows): both calls scheduled by one workflow task, both then pending.
    scheduled_by: dict[str, int] = {}
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            [summary] = await stubbed.client.data_converter.decode([event.user_metadata.summary], [str])
            scheduled_by[summary] = event.activity_task_scheduled_event_attributes.workflow_task_completed_event_id
    assert scheduled_by["code via openai"] == scheduled_by["tests via openai"]


async def test_one_agent_of_a_stage_failing_fails_the_prototype_once_naming_its_step(
    stubbed_in_real_time: Stubbed,
) -> None:
    stubbed = stubbed_in_real_time  # the code call is let go while still in flight: see the fixture
    stubbed.outside.together = {"code", "tests"}
    stubbed.outside.steps_refusing = {"tests"}  # refused while the code call is in flight: that one is let go
    order = prototype_order(providers=[AIProvider.OPENAI])

    failure = await failure_of(stubbed, order)

    assert isinstance(failure, ApplicationError) and failure.type == AIFailure.CONTENT_REFUSED
    assert [record.step for record in stubbed.outside.called("record_ai_call")] == ["requirements", "plan"]
    assert stubbed.outside.called("verify_code") == stubbed.outside.called("package_prototype") == []
    assert last_milestone(stubbed).current_step == "tests"
    assert_told_why(stubbed, order, "tests refused: content policy")


# --- the picture of the running app ----------------------------------------------------------------------------


async def test_a_pictured_app_is_zipped_kept_under_its_own_timer_shown_in_the_status_event_and_email(
    stubbed: Stubbed,
) -> None:
    picture = PreviewImage(png=png(), width=8, height=6)
    stubbed.outside.preview = picture
    order = prototype_order(providers=[AIProvider.OPENAI])
    handle = await start(stubbed, order)
    result = await handle.result()

    zip_id = result_file_id(order.prototype_id)
    kept = StoredPreview(file_id=preview_file_id(zip_id), width=8, height=6, page_url_path="/")
    assert result.status == PrototypeStatus.COMPLETED and result.preview == kept and result.preview_unavailable is None
    [package] = stubbed.outside.called("package_prototype")
    assert package.verification.preview == picture  # the packaging puts it in the zip and keeps it as a file
    assert (package.preview_file_id, package.preview_storage_key) == (kept.file_id, storage_key(kept.file_id))
    timer = stubbed.client.get_workflow_handle_for(FileRetentionWorkflow.run, retention_workflow_id(kept.file_id))
    assert (await timer.query(FileRetentionWorkflow.status)).deletes_at == package.expires_at  # as long as the zip
    milestone = last_milestone(stubbed)
    assert milestone.preview == kept
    assert milestone.verification is not None and milestone.verification.preview is None  # no bytes in the row
    completed = (await handle.query(PrototypeWorkflow.events, 0))[-1]
    assert (completed.kind, completed.preview_file_id) == ("completed", kept.file_id)

    [ready] = stubbed.outside.emails()
    assert isinstance(ready, UserEmail)
    assert f"/api/files/{kept.file_id}/preview?token={PREVIEW_TOKEN}" in ready.text  # the text alternative
    [image] = ready.images
    assert image.storage_key == storage_key(kept.file_id)
    assert ready.html is not None and f'src="cid:{image.content_id}"' in ready.html
    link = f"https://api.statex.invalid/api/files/{kept.file_id}/preview?token={PREVIEW_TOKEN}"
    assert f'<a href="{link}">' in ready.html  # the HTML says what the text says, its links working


async def test_without_a_browser_the_prototype_completes_with_no_picture_and_says_why(stubbed: Stubbed) -> None:
    order = prototype_order(providers=[AIProvider.OPENAI])
    handle = await start(stubbed, order)
    result = await handle.result()

    assert result.status == PrototypeStatus.COMPLETED and result.verified is True
    assert (result.preview, result.preview_unavailable) == (None, NO_BROWSER)
    [package] = stubbed.outside.called("package_prototype")
    assert package.preview_file_id is None
    assert (last_milestone(stubbed).preview, last_milestone(stubbed).preview_unavailable) == (None, NO_BROWSER)
    completed = (await handle.query(PrototypeWorkflow.events, 0))[-1]
    assert (completed.preview_file_id, completed.preview_unavailable) == (None, NO_BROWSER)
    [ready] = stubbed.outside.emails()
    assert isinstance(ready, UserEmail) and ready.html is None and ready.images == []
    assert f"No picture of the app: {NO_BROWSER}." in ready.text


async def test_storage_down_deletes_the_picture_now_too(stubbed: Stubbed) -> None:
    stubbed.outside.storage_down = True
    stubbed.outside.preview = PreviewImage(png=png(), width=8, height=6)
    order = prototype_order(providers=[AIProvider.OPENAI])

    await failure_of(stubbed, order)

    picture_id = preview_file_id(result_file_id(order.prototype_id))
    timer = stubbed.client.get_workflow_handle_for(FileRetentionWorkflow.run, retention_workflow_id(picture_id))
    assert (await timer.result()).deleted_early
    assert storage_key(picture_id) in stubbed.outside.called("delete_object")
