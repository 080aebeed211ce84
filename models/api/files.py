"""Requests and responses of /api/files (camelCase, as the seed's file API)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from models.api.common import CamelModel


class UploadedFile(CamelModel):
    file_id: uuid.UUID
    url: str = Field(description="Where the owner downloads it: GET, with the access token")
    download_link: str = Field(
        description="Absolute and signed for this file: works in an <a href> with no Authorization header, "
        "for FILE_DOWNLOAD_URL_SECONDS; ask the list again for a fresh one"
    )
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
