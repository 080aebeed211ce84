"""ContactWorkflow's input and query."""

from __future__ import annotations

import uuid

from pydantic import BaseModel


class ContactNotice(BaseModel):
    contact_id: uuid.UUID
    team_address: str
    name: str
    email: str
    message: str
    subject: str | None = None
    phone: str | None = None


class ContactProgress(BaseModel):
    contact_id: uuid.UUID | None
    team_notified: bool
    sender_confirmed: bool
    failure: str | None = None
    """Why the workflow ended without notifying the team (the contact is recorded FAILED)."""
