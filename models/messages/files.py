"""FileRetentionWorkflow's input and query."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel


class RetainedFile(BaseModel):
    """What FileRetentionWorkflow needs: the key to delete and when."""

    file_id: uuid.UUID
    user_id: uuid.UUID
    storage_key: str
    expires_at: datetime


class RetentionStatus(BaseModel):
    file_id: uuid.UUID | None
    deletes_at: datetime | None
    deleted_at: datetime | None
    deleted_early: bool
