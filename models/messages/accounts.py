"""An account's own emails as they cross Temporal (AccountEmailWorkflow): ids and kinds, never an address or a
token (the activity reads the address and signs the link when it sends)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints


class AccountEmailKind(StrEnum):
    VERIFY = "verify"
    """The link that verifies the account's address (after registration, or asked for again)."""
    KNOWN = "known"
    """Someone registered with an address that has an account: it says so, and carries a reset code."""
    RESET = "reset"
    """A password reset code (forgot password)."""


class AccountEmailOrder(BaseModel):
    user_id: uuid.UUID
    link_base_url: str
    interval: timedelta
    """The least time between two emails of one kind: asking more often sends nothing more."""
    idle: timedelta
    """How long the workflow waits for another request before it ends (a later one starts a new run)."""
    last_sent: dict[AccountEmailKind, datetime] = Field(default_factory=dict)
    """Carried over a continue-as-new, so the interval holds across runs."""


class AccountEmailRequest(BaseModel):
    user_id: uuid.UUID
    kind: AccountEmailKind
    message_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,200}$")]
    link_base_url: str


class AccountEmailOutcome(BaseModel):
    sent: int
    skipped: int
