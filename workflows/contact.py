"""ContactWorkflow: a contact-form message is emailed to the team, and the sender gets a confirmation.

Each email is retried within a bound (workflows.mail). If the team's cannot be sent, the contact is recorded
FAILED (the message stays in the database for the team to read) and the workflow ends; a confirmation that
cannot be sent does not undo the team's notice.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.records import RecordActivities
    from models.messages.contact import ContactNotice, ContactProgress
    from models.messages.email import EmailMessage
    from workflows.mail import send_email
    from workflows.starting import ONCE_PER_RESOURCE


def workflow_id(contact_id: uuid.UUID) -> str:
    return f"contact-{contact_id}"


START_POLICY = ONCE_PER_RESOURCE  # one message, one workflow; a retried request gets the same run


@workflow.defn
class ContactWorkflow:
    def __init__(self) -> None:
        self._team_notified = False
        self._sender_confirmed = False
        self._contact_id: uuid.UUID | None = None
        self._failure: str | None = None

    @workflow.run
    async def run(self, notice: ContactNotice) -> ContactProgress:
        self._contact_id = notice.contact_id
        if await send_email(team_email(notice, workflow.info().workflow_id), "email the team") is None:
            self._failure = "the team's email could not be sent"
            await workflow.execute_activity_method(
                RecordActivities.mark_contact_failed,
                notice.contact_id,
                start_to_close_timeout=timedelta(seconds=30),
            )
            return self.progress()
        self._team_notified = True
        self._sender_confirmed = await send_email(confirmation_email(notice), "confirm to the sender") is not None
        workflow.logger.info("contact %s: team notified, sender %s", notice.contact_id, self._sender_confirmed)
        await workflow.execute_activity_method(
            RecordActivities.mark_contact_notified,
            notice.contact_id,
            start_to_close_timeout=timedelta(seconds=30),
        )
        return self.progress()

    @workflow.query
    def progress(self) -> ContactProgress:
        return ContactProgress(
            contact_id=self._contact_id,
            team_notified=self._team_notified,
            sender_confirmed=self._sender_confirmed,
            failure=self._failure,
        )


def team_email(notice: ContactNotice, reference: str) -> EmailMessage:
    lines = [
        f"From: {notice.name} <{notice.email}>",
        *([f"Phone: {notice.phone}"] if notice.phone else []),
        f"Reference: {reference}",
        "",
        notice.message,
    ]
    return EmailMessage(
        message_id=f"contact-{notice.contact_id}-team",
        to=[notice.team_address],
        reply_to=notice.email,
        subject=f"Contact form: {notice.subject or notice.name}"[:300],
        text="\n".join(lines),
    )


def confirmation_email(notice: ContactNotice) -> EmailMessage:
    """A fixed text: nothing the sender typed is echoed, so the form cannot send chosen words to an address
    that is not the sender's own."""
    return EmailMessage(
        message_id=f"contact-{notice.contact_id}-confirmation",
        to=[notice.email],
        subject="We received your message",
        text=(
            "Hello,\n\nthank you for writing to Statex. We received your message and will answer within one "
            "working day.\n\nIf you did not write to us, someone else gave your address; you can ignore this "
            "email.\n\n-- The Statex team"
        ),
    )
