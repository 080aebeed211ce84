"""Requests and responses of /api/me: the user's data export and the erasure of their account."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from models.api.auth import Password


class ExportAccepted(BaseModel):
    export_id: uuid.UUID
    status: Literal["RUNNING", "COMPLETED", "FAILED"]
    status_url: str = Field(description="Poll it: GET, with the access token")


class ExportView(ExportAccepted):
    file_id: uuid.UUID | None = Field(default=None, description="The zip, once made: GET /api/files/{file_id}")
    download_url: str | None = None
    expires_at: datetime | None = None


class ErasureRequest(BaseModel):
    password: Password = Field(description="The account's password, asked again")


class ErasureAccepted(BaseModel):
    erasure_id: str = Field(description="The erasure's workflow id: one per account, a repeat joins it")
    status: Literal["ERASING"] = "ERASING"
