"""Requests and responses of /api/contact."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, StringConstraints

from models.api.common import Email, Name, NoControls, OnOneLine, Strict, examples
from models.enums import ContactStatus

Subject = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), OnOneLine]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9 ()-]{5,32}$"), OnOneLine]


class ContactRequest(Strict):
    """`name`, `email` and `subject` reach email headers: one line each. The message may have lines."""

    model_config = examples(
        {
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "subject": "A booking app for climbing gyms",
            "message": "Hello,\nI would like a prototype of a booking app. Can we talk this week?",
            "phone": "+420 601 234 567",
        }
    )

    name: Name
    email: Email
    message: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000), NoControls]
    subject: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), OnOneLine] | None
    ) = None
    phone: (
        Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9 ()-]{5,32}$"), OnOneLine] | None
    ) = None


class ContactAccepted(BaseModel):
    model_config = examples(
        {
            "success": True,
            "contact_id": "5e1a7c3b-9d2f-4b8e-a6c1-0f3d5b7e9a22",
            "status": "RECEIVED",
            "workflow_id": "contact-5e1a7c3b-9d2f-4b8e-a6c1-0f3d5b7e9a22",
        }
    )

    success: Literal[True] = True
    contact_id: uuid.UUID
    status: ContactStatus
    workflow_id: str
