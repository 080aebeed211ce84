"""PrototypeRevisionWorkflow: a completed prototype changed as its customer's feedback asks, zipped, emailed.

The files it builds on are read from the database (activities.revisions: the previous completed revision's, or
the prototype's own), never from a zip, which expires. The revise agent (models.prompts.REVISE) is given the
idea, the plan, those files and the feedback, and answers with only the files it changes; they go over the
files from before. Then the same sandbox checks and fix rounds as the prototype (workflows.prototype_steps),
the same packaging (its own zip, its retention timer first) and one email. Each model call is recorded as an
AIResponse of the prototype whose step is `revision-<n>-<step>` (`revise`, `fix-1` ...), so its cost is its
own; the PrototypeRevision row follows the workflow at each milestone and keeps, once completed, the merged
files the next revision builds on.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.timeouts import DATABASE_CALL

with workflow.unsafe.imports_passed_through():
    from activities.packaging import fenced, merged_files
    from activities.revisions import RevisionActivities
    from models.enums import PrototypeStatus
    from models.messages.prototypes import (
        PrototypeEvent,
        PrototypeOrder,
        RevisionBase,
        RevisionMilestone,
        RevisionOrder,
        RevisionProgress,
        StepAnswer,
        StoredPreview,
        VerificationResult,
    )
    from models.prompts import REVISE
    from workflows.ai import ModelCaller
    from workflows.emails import revision_failure_email, revision_ready_email
    from workflows.mail import EMAIL_BY_USER_ID
    from workflows.prototype_steps import (
        PACKAGING,
        RECORD_RETRY,
        CodeRounds,
        call_fields,
        failure_reason,
        step_providers,
    )
    from workflows.starting import ONCE_PER_RESOURCE

_FILE_ID_NAMESPACE = uuid.UUID("0e9b7c4d-2a61-4f3e-8d5b-9c1a7e3f6b20")
_FAILURES = (ActivityError, ApplicationError)
ROW_DEADLINE = timedelta(minutes=2)
"""The row is committed before the start (services.staging): it is there at once."""

START_POLICY = ONCE_PER_RESOURCE
"""The id names the prototype and the revision's number, taken when its row was committed: a second start is a
retried request for the same revision."""


def workflow_id(prototype_id: uuid.UUID, number: int) -> str:
    return f"prototype-{prototype_id}-revision-{number}"


def revision_file_id(prototype_id: uuid.UUID, number: int) -> uuid.UUID:
    """The revision's zip: derived, so a replayed or retried workflow names the same file."""
    return uuid.uuid5(_FILE_ID_NAMESPACE, workflow_id(prototype_id, number))


REVISION_STEPS = [REVISE.name, PACKAGING]


@workflow.defn
class PrototypeRevisionWorkflow(CodeRounds):
    def __init__(self) -> None:
        self._order: RevisionOrder | None = None
        self._status = PrototypeStatus.QUEUED
        self._idea = ""
        self._done: list[str] = []
        self._current: str | None = None
        self._cost_micros = 0
        self._file_id: uuid.UUID | None = None
        self._download_token = ""
        self._preview: StoredPreview | None = None
        self._preview_token: str | None = None
        self._preview_unavailable: str | None = None
        self._error: str | None = None
        self._caller: ModelCaller | None = None
        self._verification: VerificationResult | None = None
        self._fix_rounds = 0
        self._events: list[PrototypeEvent] = []
        self._base: RevisionBase | None = None
        self._files: dict[str, str] | None = None
        self._mail_by_id = True

    @workflow.run
    async def run(self, order: RevisionOrder) -> RevisionProgress:
        self._order, self._idea, self._caller = order, order.idea, ModelCaller(order.policy)
        self._mail_by_id = workflow.patched(EMAIL_BY_USER_ID)  # decided once, at the start
        self._status, self._current = PrototypeStatus.RUNNING, REVISE.name
        self._event("step_started", step=self._current)
        await self._record_milestone(deadline=ROW_DEADLINE)
        try:
            answers = await self._revise(order)
            expires_at = await self._package(order, answers, None)
        except _FAILURES as err:
            reason = failure_reason(err)
            self._status, self._error = PrototypeStatus.FAILED, reason
            await self._record_milestone()
            self._event("failed", step=self._current, cost_usd_micros=self._cost_micros, error=reason)
            await self._email(order, revision_failure_email(order, reason), "email why the revision failed")
            raise
        assert self._base is not None
        self._files = merged_files(self._base.files, answers)
        self._status, self._current = PrototypeStatus.COMPLETED, None
        await self._record_milestone()
        self._event("completed", cost_usd_micros=self._cost_micros, verified=self._verified(), **self._ending_fields())
        ready = revision_ready_email(
            order,
            self.progress(),
            expires_at,
            self._download_token,
            self._verification,
            picture=self._picture(order),
            preview_token=self._preview_token,
        )
        await self._email(order, ready, "email the download link")
        return self.progress()

    async def _revise(self, order: RevisionOrder) -> list[StepAnswer]:
        """The feedback applied to the files from before, then checked (and fixed) like the prototype's code."""
        assert self._caller is not None
        self._base = base = await workflow.execute_activity_method(
            RevisionActivities.read_revision_base,
            order,
            start_to_close_timeout=DATABASE_CALL,
            retry_policy=RECORD_RETRY,
            summary="read the files to revise",
        )
        self._idea = base.idea
        before = fenced(base.files)
        call = REVISE.call(base.idea, {"plan": base.plan, "code": before, "feedback": order.feedback})
        name = self._named(REVISE.name)
        reply = await self._caller.ask(step_providers(order, REVISE), call, purpose=name)
        await self._record_call(order, name, call.prompt, reply)
        self._cost_micros += reply.cost_usd_micros
        answers = [
            StepAnswer(
                step=name,
                document=REVISE.document,
                text=reply.text,
                model_used=reply.model_used,
                cost_usd_micros=reply.cost_usd_micros,
                holds_files=True,
            )
        ]
        # The files from before come first, so that the answer's blocks replace them in the sandbox and the
        # fix agent's prompt alike.
        texts = {"plan": base.plan, REVISE.name: f"{before}\n\n{reply.text}"}
        await self._verify_and_fix(order, REVISE, texts, answers)
        self._done.append(REVISE.name)
        self._event("step_finished", step=REVISE.name, **call_fields(reply))
        self._current = PACKAGING
        self._event("step_started", step=PACKAGING)
        await self._record_milestone()
        return answers

    # --- the shared steps' hooks (workflows.prototype_steps) ---------------------------------------------

    def _named(self, step: str) -> str:
        assert self._order is not None
        return f"revision-{self._order.number}-{step}"

    def _zip(self, order: PrototypeOrder) -> tuple[uuid.UUID, dict[str, Any]]:
        assert self._order is not None and self._base is not None
        number = self._order.number
        extras = {"base_files": self._base.files, "revision": number, "feedback": self._order.feedback}
        return revision_file_id(order.prototype_id, number), extras

    async def _record_milestone(self, *, deadline: timedelta | None = None) -> None:
        assert self._order is not None
        await workflow.execute_activity_method(
            RevisionActivities.record_revision_milestone,
            RevisionMilestone.of(self.progress(), revision_id=self._order.revision_id, files=self._files),
            start_to_close_timeout=DATABASE_CALL,
            schedule_to_close_timeout=deadline,
            retry_policy=RECORD_RETRY,
            summary=f"record {self._status.lower()} {self._current or ''}".strip(),
        )

    @workflow.query
    def progress(self) -> RevisionProgress:
        order = self._order
        return RevisionProgress(
            prototype_id=order.prototype_id if order else None,
            number=order.number if order else 0,
            status=self._status,
            feedback=order.feedback if order else "",
            steps=list(REVISION_STEPS),
            steps_done=list(self._done),
            current_step=self._current,
            trying=self._caller.trying if self._caller else None,
            cost_usd_micros=self._cost_micros,
            file_id=self._file_id,
            error=self._error,
            verified=self._verified(),
            fix_rounds=self._fix_rounds,
            preview=self._preview,
            preview_unavailable=self._preview_unavailable,
            based_on=self._base.revision if self._base else None,
        )
