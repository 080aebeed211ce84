"""Requests and responses of /api/contact."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, StringConstraints

from models.api.common import Email, Name, NoControls, OnOneLine, Strict
from models.enums import ContactStatus

Subject = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), OnOneLine]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9 ()-]{5,32}$"), OnOneLine]


class ContactRequest(Strict):
    """`name`, `email` and `subject` reach email headers: one line each. The message may have lines."""

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
    success: Literal[True] = True
    contact_id: uuid.UUID
    status: ContactStatus
    workflow_id: str
