"""ContactWorkflow: a contact-form message is emailed to the team, and the sender gets a confirmation."""

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

    @workflow.run
    async def run(self, notice: ContactNotice) -> ContactProgress:
        self._contact_id = notice.contact_id
        await send_email(team_email(notice, workflow.info().workflow_id), "email the team")
        self._team_notified = True
        await send_email(confirmation_email(notice), "confirm to the sender")
        self._sender_confirmed = True
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
    return EmailMessage(
        message_id=f"contact-{notice.contact_id}-confirmation",
        to=[notice.email],
        subject="We received your message",
        text=(
            f"Hello {notice.name},\n\nthank you for writing to Statex. We received your message and "
            "will answer within one working day.\n\nYour message:\n\n"
            f"{notice.message}\n\n-- The Statex team"
        ),
    )
