"""Requests and responses of /api/files (camelCase, as the seed's file API)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from models.api.common import CamelModel


class UploadedFile(CamelModel):
    file_id: uuid.UUID
    url: str = Field(description="Where the owner downloads it: GET, with the access token")
    size: int
    expires_at: datetime


class FileInfo(UploadedFile):
    name: str
    content_type: str
    sha256: str
    created_at: datetime


class FileDeletion(CamelModel):
    file_id: uuid.UUID
    deleted: bool = Field(description="True once the object is gone; false if deletion is still under way")
