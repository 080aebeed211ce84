"""ContactWorkflow: a contact-form message is emailed to the team, and the sender gets a confirmation.

The input is the stored message's id: the email activity reads the sender's details from the database, so the
history holds nothing personal even for whoever holds the payload keys. Runs begun before (`contact-by-id`) carry
the details in their input and build the emails from it.

Each email is retried within a bound (workflows.mail). If the team's cannot be sent, the contact is recorded
FAILED (the message stays in the database for the team to read) and the workflow ends; a confirmation that
cannot be sent does not undo the team's notice.
"""

from __future__ import annotations

import uuid

from temporalio import workflow

from workflows.timeouts import DATABASE_CALL

with workflow.unsafe.imports_passed_through():
    from activities.contact import ContactLetter, confirmation_email, team_email
    from activities.records import RecordActivities
    from models.messages.contact import ContactEmail, ContactEmailKind, ContactNotice, ContactProgress
    from models.messages.email import EmailReceipt
    from workflows.mail import send_contact_email, send_email
    from workflows.starting import ONCE_PER_RESOURCE


def workflow_id(contact_id: uuid.UUID) -> str:
    return f"contact-{contact_id}"


START_POLICY = ONCE_PER_RESOURCE  # one message, one workflow; a retried request gets the same run
CONTACT_BY_ID = "contact-by-id"
"""The patch after which the emails are built by the activity from the stored message, not from the input."""


@workflow.defn
class ContactWorkflow:
    def __init__(self) -> None:
        self._team_notified = False
        self._sender_confirmed = False
        self._contact_id: uuid.UUID | None = None
        self._failure: str | None = None
        self._by_id = True

    @workflow.run
    async def run(self, notice: ContactNotice) -> ContactProgress:
        self._contact_id = notice.contact_id
        self._by_id = workflow.patched(CONTACT_BY_ID)  # decided once, at the start: a run is old or new throughout
        if await self._send(notice, ContactEmailKind.TEAM, "email the team") is None:
            self._failure = "the team's email could not be sent"
            await workflow.execute_activity_method(
                RecordActivities.mark_contact_failed,
                notice.contact_id,
                start_to_close_timeout=DATABASE_CALL,
            )
            return self.progress()
        self._team_notified = True
        self._sender_confirmed = (
            await self._send(notice, ContactEmailKind.CONFIRMATION, "confirm to the sender") is not None
        )
        workflow.logger.info("contact %s: team notified, sender %s", notice.contact_id, self._sender_confirmed)
        await workflow.execute_activity_method(
            RecordActivities.mark_contact_notified,
            notice.contact_id,
            start_to_close_timeout=DATABASE_CALL,
        )
        return self.progress()

    async def _send(self, notice: ContactNotice, kind: ContactEmailKind, summary: str) -> EmailReceipt | None:
        if self._by_id:
            reference = workflow.info().workflow_id
            return await send_contact_email(
                ContactEmail(
                    contact_id=notice.contact_id, kind=kind, team_address=notice.team_address, reference=reference
                ),
                summary,
            )
        letter = ContactLetter.of(notice)
        if kind == ContactEmailKind.TEAM:
            return await send_email(team_email(letter, notice.team_address, workflow.info().workflow_id), summary)
        return await send_email(confirmation_email(letter), summary)

    @workflow.query
    def progress(self) -> ContactProgress:
        return ContactProgress(
            contact_id=self._contact_id,
            team_notified=self._team_notified,
            sender_confirmed=self._sender_confirmed,
            failure=self._failure,
        )
