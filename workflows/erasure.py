"""ErasureWorkflow: a user forgotten, step by step, each step an idempotent activity, so a worker restarted at any
point resumes where the history says it was and repeats nothing that shows.

Order matters: sessions first (nothing new can start), then the user's running workflows (file timers told to
delete now, everything else cancelled, or terminated after a grace period), their objects, their rows (payments
kept, anonymised), their mail in the outbox; then one confirmation to the address read at the start, whose
delivery row keeps no address; last, the closed histories of every workflow carrying their `StatexUserId`, or
their address's `StatexContactKey` (contact messages sent without signing in).
This workflow carries only an opaque resource id, so it does not delete itself; its own history (encrypted, like
every payload) goes with the namespace's retention period.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.erasure import ErasureActivities
    from models.messages.email import EmailMessage
    from models.messages.privacy import DeleteHistories, ErasedRows, ErasureOrder, ErasureProgress, StopWorkflows
    from workflows.mail import send_email
    from workflows.starting import ONCE_PER_RESOURCE

ERASURE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))
"""No attempt limit: an erasure is owed, so it waits out a database or Temporal outage rather than give up."""
STEP_TIMEOUT = timedelta(minutes=2)
_NAMESPACE = uuid.UUID("8c4e2b7a-5d1f-4f0e-b3a9-7e6d1c2b9f04")


def workflow_id(user_id: uuid.UUID) -> str:
    return f"erasure-{user_id}"


START_POLICY = ONCE_PER_RESOURCE
"""One erasure per account: a second request joins the running one or finds the finished one."""


def erasure_id(user_id: uuid.UUID) -> uuid.UUID:
    """An opaque id for the erasure, so the confirmation's message id does not carry the user's id."""
    return uuid.uuid5(_NAMESPACE, str(user_id))


def confirmation_email(user_id: uuid.UUID, address: str) -> EmailMessage:
    return EmailMessage(
        message_id=f"erasure-{erasure_id(user_id)}-confirmed",
        to=[address],
        subject="Your Statex account has been erased",
        text=(
            "Hello,\n\nas you asked, your Statex account and the data held about you have been erased: your "
            "prototypes, files, AI requests, messages and sign-ins. Records of payments are kept, no longer "
            "linked to you, for as long as accounting law requires.\n\nThis is the last email we send you; "
            "your address is now forgotten.\n\n-- The Statex team"
        ),
    )


@workflow.defn
class ErasureWorkflow:
    def __init__(self) -> None:
        self._user_id: uuid.UUID | None = None
        self._done: list[str] = []
        self._summary: str | None = None
        self._finished = False

    @workflow.run
    async def run(self, order: ErasureOrder) -> ErasureProgress:
        self._user_id = user_id = order.user_id
        activities = ErasureActivities
        subject = await workflow.execute_activity_method(
            activities.read_erasure_subject, user_id, **self._step("read the address")
        )
        await workflow.execute_activity_method(activities.revoke_all_sessions, user_id, **self._step("revoke sessions"))
        stopped = await workflow.execute_activity_method(
            activities.stop_user_workflows,
            StopWorkflows(user_id=user_id, grace=order.cancel_grace, contact_key=subject.contact_key),
            **self._step("stop the user's workflows", order.cancel_grace + STEP_TIMEOUT),
        )
        await workflow.execute_activity_method(
            activities.delete_stored_objects, user_id, **self._step("delete stored objects")
        )
        rows = ErasedRows(user_id=user_id, email=subject.email, keep_payments_years=order.keep_payments_years)
        await workflow.execute_activity_method(activities.erase_rows, rows, **self._step("erase rows"))
        if subject.email is not None:
            await workflow.execute_activity_method(
                activities.purge_outbox, subject.email, **self._step("purge the outbox")
            )
            confirmation = confirmation_email(user_id, subject.email)
            await send_email(confirmation, "confirm the erasure")  # sent once: its message id is the erasure's
            await workflow.execute_activity_method(
                activities.forget_recipient, confirmation.message_id, **self._step("forget the recipient")
            )
        await workflow.execute_activity_method(
            activities.delete_user_histories,
            DeleteHistories(
                user_id=user_id,
                known=[*stopped.cancelled, *stopped.terminated, *stopped.files_deleted_early],
                contact_key=subject.contact_key,
            ),
            **self._step("delete histories"),
        )
        self._done.append("delete histories")
        self._finished = True
        return self.progress()

    def _step(self, summary: str, timeout: timedelta = STEP_TIMEOUT) -> dict[str, Any]:
        """The options of the next step; it is listed as done in `progress` once the step before it returned."""
        if self._summary is not None:
            self._done.append(self._summary)
        self._summary = summary
        return {
            "start_to_close_timeout": timeout,
            "heartbeat_timeout": timedelta(seconds=30),
            "retry_policy": ERASURE_RETRY,
            "summary": summary,
        }

    @workflow.query
    def progress(self) -> ErasureProgress:
        return ErasureProgress(user_id=self._user_id, steps_done=list(self._done), finished=self._finished)
