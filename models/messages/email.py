"""Email as it crosses Temporal: what the email activity sends, and its receipt."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

_CONTENT_ID = r"^[A-Za-z0-9._-]{1,100}@[A-Za-z0-9.-]{1,100}$"


class InlineImage(BaseModel):
    """A picture the HTML part shows in place (`<img src="cid:<content_id>">`), with its bytes: built by the email
    activity from a StoredImage, never sent through Temporal."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")  # bytes in JSON, should it be dumped

    content_id: Annotated[str, StringConstraints(pattern=_CONTENT_ID)]
    content_type: Literal["image/png"] = "image/png"
    data: bytes


class StoredImage(BaseModel):
    """A picture an email shows in place, as the workflow names it: where storage keeps it. The email activity
    reads it, so the workflow's history never holds the bytes."""

    content_id: Annotated[str, StringConstraints(pattern=_CONTENT_ID)]
    content_type: Literal["image/png"] = "image/png"
    storage_key: str


class EmailMessage(BaseModel):
    """`message_id` is the idempotency key: the same id is never delivered twice."""

    message_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,200}$")]
    to: list[str] = Field(min_length=1)
    subject: str = Field(max_length=300)
    text: str
    html: str | None = None
    reply_to: str | None = None
    images: list[InlineImage] = Field(default_factory=list, description="Shown in place by the HTML part")


class UserEmail(BaseModel):
    """An email to an account's address, which the activity reads from the database: the workflow that sends it
    never holds the address."""

    user_id: uuid.UUID
    message_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,200}$")]
    subject: str = Field(max_length=300)
    text: str
    html: str | None = Field(default=None, description="An HTML alternative to `text`, which says the same")
    images: list[StoredImage] = Field(default_factory=list, description="Shown in place by the HTML part")

    def addressed_to(self, address: str, images: list[InlineImage] | None = None) -> EmailMessage:
        """The message to send, with the pictures as read from storage."""
        return EmailMessage(
            message_id=self.message_id,
            to=[address],
            subject=self.subject,
            text=self.text,
            html=self.html,
            images=images or [],
        )


class EmailReceipt(BaseModel):
    message_id: str
    backend: str
    provider_message_id: str | None
    sent_at: datetime
