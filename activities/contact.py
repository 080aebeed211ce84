"""The contact form's two emails, built from the stored message: the workflow carries only the contact's id.

Each email keeps its message id (`contact-<id>-team`, `contact-<id>-confirmation`), so a retried activity finds
the earlier delivery and sends nothing again. A message erased before its email went out fails the email for
good: there is nobody left to write to.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.email import EmailActivities
from models.db import open_session
from models.messages.contact import ContactEmail, ContactEmailKind, ContactNotice
from models.messages.email import EmailMessage, EmailReceipt
from models.tables import Contact


@dataclass(frozen=True)
class ContactLetter:
    """What the emails say about a message: read from its row (or, in runs begun before ids, from the input).
    Never crosses Temporal."""

    contact_id: uuid.UUID
    name: str
    email: str
    message: str
    subject: str | None = None
    phone: str | None = None

    @classmethod
    def of(cls, row: Contact | ContactNotice) -> ContactLetter:
        if row.name is None or row.email is None or row.message is None:
            raise ValueError("a contact notice without the sender's details: read the stored message instead")
        contact_id = row.id if isinstance(row, Contact) else row.contact_id
        return cls(contact_id, row.name, row.email, row.message, row.subject, row.phone)


def team_email(letter: ContactLetter, team_address: str, reference: str) -> EmailMessage:
    lines = [
        f"From: {letter.name} <{letter.email}>",
        *([f"Phone: {letter.phone}"] if letter.phone else []),
        f"Reference: {reference}",
        "",
        letter.message,
    ]
    return EmailMessage(
        message_id=f"contact-{letter.contact_id}-team",
        to=[team_address],
        reply_to=letter.email,
        subject=f"Contact form: {letter.subject or letter.name}"[:300],
        text="\n".join(lines),
    )


def confirmation_email(letter: ContactLetter) -> EmailMessage:
    """A fixed text: nothing the sender typed is echoed, so the form cannot send chosen words to an address
    that is not the sender's own."""
    return EmailMessage(
        message_id=f"contact-{letter.contact_id}-confirmation",
        to=[letter.email],
        subject="We received your message",
        text=(
            "Hello,\n\nthank you for writing to Statex. We received your message and will answer within one "
            "working day.\n\nIf you did not write to us, someone else gave your address; you can ignore this "
            "email.\n\n-- The Statex team"
        ),
    )


class ContactActivities:
    def __init__(self, email: EmailActivities, engine: AsyncEngine) -> None:
        self.email = email
        self.engine = engine

    @activity.defn
    async def send_contact_email(self, request: ContactEmail) -> EmailReceipt:
        async with open_session(self.engine) as db:
            row = await db.get(Contact, request.contact_id)
        if row is None:
            raise ApplicationError(
                f"contact {request.contact_id} is no longer stored", type="ContactGone", non_retryable=True
            )
        letter = ContactLetter.of(row)
        if request.kind == ContactEmailKind.TEAM:
            return await self.email.send_email(team_email(letter, request.team_address, request.reference))
        return await self.email.send_email(confirmation_email(letter))
