"""Email as it crosses Temporal: what the email activity sends, and its receipt."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints


class EmailMessage(BaseModel):
    """`message_id` is the idempotency key: the same id is never delivered twice."""

    message_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,200}$")]
    to: list[str] = Field(min_length=1)
    subject: str = Field(max_length=300)
    text: str
    html: str | None = None
    reply_to: str | None = None


class UserEmail(BaseModel):
    """An email to an account's address, which the activity reads from the database: the workflow that sends it
    never holds the address."""

    user_id: uuid.UUID
    message_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,200}$")]
    subject: str = Field(max_length=300)
    text: str

    def addressed_to(self, address: str) -> EmailMessage:
        return EmailMessage(message_id=self.message_id, to=[address], subject=self.subject, text=self.text)


class EmailReceipt(BaseModel):
    message_id: str
    backend: str
    provider_message_id: str | None
    sent_at: datetime
