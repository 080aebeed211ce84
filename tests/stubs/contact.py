"""Stubs of the contact form's activities (the team's email, the message's notified or failed mark), and the
contact workflow's input."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.messages.contact import ContactEmail, ContactNotice
from models.messages.email import EmailReceipt
from stubs.base import Stubs


class ContactStubs(Stubs):
    def all(self) -> list[Callable[..., Any]]:
        return [self.send_contact_email, self.mark_contact_notified, self.mark_contact_failed]

    @activity.defn(name="send_contact_email")
    async def send_contact_email(self, email: ContactEmail) -> EmailReceipt:
        await self._note(email)
        if self.outside.mailer_down:
            raise ApplicationError("the mailer is unreachable", type="EmailServiceUnreachable")
        message_id = f"contact-{email.contact_id}-{email.kind}"
        return EmailReceipt(message_id=message_id, backend="stub", provider_message_id=None, sent_at=datetime.now(UTC))

    @activity.defn(name="mark_contact_notified")
    async def mark_contact_notified(self, contact_id: uuid.UUID) -> None:
        await self._note(contact_id)

    @activity.defn(name="mark_contact_failed")
    async def mark_contact_failed(self, contact_id: uuid.UUID) -> None:
        await self._note(contact_id)


def contact_notice() -> ContactNotice:
    """As the service builds it: the stored message's id, nothing of what the sender typed."""
    return ContactNotice(contact_id=uuid.uuid4(), team_address="team@statex.invalid")
