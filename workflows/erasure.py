"""ErasureWorkflow: a user forgotten, step by step, each step an idempotent activity, so a worker restarted at any
point resumes where the history says it was and repeats nothing that shows.

Order matters: sessions first (nothing new can start), then the user's running workflows (file timers told to
delete now, everything else cancelled, or terminated after a grace period), their objects, their rows (payments
kept, anonymised), their mail in the outbox; then one confirmation to the address read at the start, whose
delivery row keeps no address; last, the closed histories of every workflow carrying their `StatexUserId`, or
their address's `StatexContactKey` (contact messages sent without signing in).
This workflow carries only an opaque resource id, so it does not delete itself; its own history (encrypted, like
every payload) goes with the namespace's retention period.

It ends by starting KeptPaymentsWorkflow, a child that outlives it: a durable timer to the day after the
anonymised payments' `keep_until`, then one idempotent delete. A workflow of its own rather than a timer at the
end of this one, so this history (which holds the address the confirmation went to) closes now; the child's
holds an opaque erasure id and a date.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.timeouts import HEARTBEAT

with workflow.unsafe.imports_passed_through():
    from activities.erasure import ErasureActivities
    from models import search_attributes
    from models.messages.email import EmailMessage
    from models.messages.privacy import (
        DeleteHistories,
        ErasedRows,
        ErasureOrder,
        ErasureProgress,
        KeptPayments,
        PurgeKeptPayments,
        StopWorkflows,
    )
    from workflows.mail import send_email
    from workflows.starting import ONCE_PER_RESOURCE

ERASURE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))
"""No attempt limit: an erasure is owed, so it waits out a database or Temporal outage rather than give up."""
STEP_TIMEOUT = timedelta(minutes=2)
_NAMESPACE = uuid.UUID("8c4e2b7a-5d1f-4f0e-b3a9-7e6d1c2b9f04")


KEPT_PAYMENTS_TIMER = "kept-payments-timer"
"""The patch after which an erasure that kept payments ends by starting KeptPaymentsWorkflow."""


def workflow_id(user_id: uuid.UUID) -> str:
    return f"erasure-{user_id}"


def kept_payments_workflow_id(erasure: uuid.UUID) -> str:
    return f"kept-payments-{erasure}"


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
        counts = await workflow.execute_activity_method(activities.erase_rows, rows, **self._step("erase rows"))
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
        if counts.keep_until is not None and workflow.patched(KEPT_PAYMENTS_TIMER):
            await workflow.start_child_workflow(
                KeptPaymentsWorkflow.run,
                KeptPayments(erasure_id=erasure_id(user_id), keep_until=counts.keep_until),
                id=kept_payments_workflow_id(erasure_id(user_id)),
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,  # it outlives the erasure by years
                search_attributes=search_attributes.for_resource(erasure_id(user_id)),
                static_summary="delete the anonymised payments after the accounting period",
            )
        self._finished = True
        return self.progress()

    def _step(self, summary: str, timeout: timedelta = STEP_TIMEOUT) -> dict[str, Any]:
        """The options of the next step; it is listed as done in `progress` once the step before it returned."""
        if self._summary is not None:
            self._done.append(self._summary)
        self._summary = summary
        return {
            "start_to_close_timeout": timeout,
            "heartbeat_timeout": HEARTBEAT,
            "retry_policy": ERASURE_RETRY,
            "summary": summary,
        }

    @workflow.query
    def progress(self) -> ErasureProgress:
        return ErasureProgress(user_id=self._user_id, steps_done=list(self._done), finished=self._finished)


def purge_due(keep_until: date) -> datetime:
    """The start of the day after the last one the records must be kept."""
    return datetime.combine(keep_until + timedelta(days=1), time(), UTC)


@workflow.defn
class KeptPaymentsWorkflow:
    """Anonymised payment records deleted once the accounting period that kept them is over."""

    @workflow.run
    async def run(self, kept: KeptPayments) -> int:
        due = purge_due(kept.keep_until)
        workflow.set_current_details(f"Deletes anonymised payment records at {due:%Y-%m-%d} 00:00 UTC")
        if (wait := due - workflow.now()) > timedelta(0):
            await workflow.sleep(wait, summary="the accounting period")  # durable: years, across restarts
        return await workflow.execute_activity_method(
            ErasureActivities.purge_kept_payments,
            PurgeKeptPayments(kept_before=kept.keep_until + timedelta(days=1)),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=ERASURE_RETRY,
            summary="delete the anonymised payments",
        )
