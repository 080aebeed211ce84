"""ContactWorkflow's input and query, and its email activity's input: ids, no personal data."""

from __future__ import annotations

import uuid
from enum import StrEnum

from pydantic import BaseModel


class ContactNotice(BaseModel):
    contact_id: uuid.UUID
    team_address: str
    name: str | None = None
    email: str | None = None
    message: str | None = None
    subject: str | None = None
    phone: str | None = None
    """The sender's details: only in runs begun before the workflow read them from the stored message (the
    `contact-by-id` patch); new runs carry the id alone."""


class ContactEmailKind(StrEnum):
    TEAM = "team"
    CONFIRMATION = "confirmation"


class ContactEmail(BaseModel):
    """One of a contact's two emails, for the activity that reads the message and sends it."""

    contact_id: uuid.UUID
    kind: ContactEmailKind
    team_address: str
    reference: str
    """The workflow id, quoted in the team's email."""


class ContactProgress(BaseModel):
    contact_id: uuid.UUID | None
    team_notified: bool
    sender_confirmed: bool
    failure: str | None = None
    """Why the workflow ended without notifying the team (the contact is recorded FAILED)."""
