"""PrototypeRevisionWorkflow with stubbed activities: the files from before reach the agent, the sandbox and the
zip; failing checks get a fix round recorded under the revision's own name; its own zip, row and email."""

from __future__ import annotations

from helpers import png
from stubs import Stubbed
from stubs.ai import STUB_COST_MICROS
from stubs.files import PREVIEW_TOKEN
from stubs.prototypes import STUB_FILES, revision_order

from activities.packaging import code_files
from activities.storage import storage_key
from models.enums import PrototypeStatus
from models.messages.email import UserEmail
from models.messages.prototypes import PreviewImage, RevisionMilestone
from workflows.prototype import result_file_id
from workflows.prototype_steps import preview_file_id
from workflows.revision import PrototypeRevisionWorkflow, revision_file_id, workflow_id


async def test_a_failing_revision_gets_a_fix_round_of_its_own_and_ships_verified(stubbed: Stubbed) -> None:
    stubbed.outside.verifications_failing = 1
    order = revision_order(number=2)

    handle = await stubbed.client.start_workflow(
        PrototypeRevisionWorkflow.run,
        order,
        id=workflow_id(order.prototype_id, order.number),
        task_queue=stubbed.task_queue,
    )
    result = await handle.result()

    assert (result.status, result.verified, result.fix_rounds) == (PrototypeStatus.COMPLETED, True, 1)
    assert result.cost_usd_micros == 2 * STUB_COST_MICROS
    assert result.file_id == revision_file_id(order.prototype_id, 2)
    outside = stubbed.outside
    records = outside.called("record_ai_call")
    assert [record.step for record in records] == ["revision-2-revise", "revision-2-fix-1"]
    assert [record.call_key for record in records] == [
        f"prototype-{order.prototype_id}-revision-2-revise",
        f"prototype-{order.prototype_id}-revision-2-fix-1",
    ]
    revise_prompt = outside.called("openai_chat")[0].prompt
    assert order.feedback in revise_prompt and "print('to-do')" in revise_prompt
    first_check = outside.called("verify_code")[0]
    assert code_files("\n\n".join(first_check.code_answers)) == STUB_FILES  # the files from before are checked
    [package] = outside.called("package_prototype")
    assert (package.base_files, package.revision, package.feedback) == (STUB_FILES, 2, order.feedback)
    last: RevisionMilestone = outside.called("record_revision_milestone")[-1]
    assert (last.revision_id, last.status, last.files) == (order.revision_id, PrototypeStatus.COMPLETED, STUB_FILES)
    [ready] = outside.emails()
    assert ready.message_id == f"prototype-{order.prototype_id}-revision-2-ready"
    assert order.email is None and outside.called("send_user_email") == [ready]  # the activity reads the address
    assert isinstance(ready, UserEmail) and ready.user_id == order.user_id


async def test_a_revision_gets_its_own_picture_kept_beside_its_own_zip(stubbed: Stubbed) -> None:
    stubbed.outside.preview = PreviewImage(png=png(), width=8, height=6, page_url_path="/items")
    order = revision_order(number=1)

    handle = await stubbed.client.start_workflow(
        PrototypeRevisionWorkflow.run, order, id=workflow_id(order.prototype_id, 1), task_queue=stubbed.task_queue
    )
    result = await handle.result()

    own = preview_file_id(revision_file_id(order.prototype_id, 1))
    assert own != preview_file_id(result_file_id(order.prototype_id))  # not the prototype's picture
    assert result.preview is not None and (result.preview.file_id, result.preview.page_url_path) == (own, "/items")
    [package] = stubbed.outside.called("package_prototype")
    assert package.preview_file_id == own
    last: RevisionMilestone = stubbed.outside.called("record_revision_milestone")[-1]
    assert last.preview == result.preview
    [ready] = stubbed.outside.emails()
    assert isinstance(ready, UserEmail) and [image.storage_key for image in ready.images] == [storage_key(own)]
    assert f"/api/files/{own}/preview?token={PREVIEW_TOKEN}" in ready.text
