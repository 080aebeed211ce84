"""Requests and responses of /api/files (camelCase, as the seed's file API)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from models.api.common import CamelModel, examples

_UPLOADED = {
    "fileId": "8d4e2a7c-1b3f-4c6d-9e8a-7f0b2c4d6e81",
    "url": "/api/files/8d4e2a7c-1b3f-4c6d-9e8a-7f0b2c4d6e81",
    "downloadLink": "https://api.statex.example/api/files/8d4e2a7c-1b3f-4c6d-9e8a-7f0b2c4d6e81?token=dl_5a1c9e3b7d2f4a6c",
    "size": 48213,
    "expiresAt": "2026-05-05T09:31:00Z",
}


class UploadedFile(CamelModel):
    model_config = examples(_UPLOADED)

    file_id: uuid.UUID
    url: str = Field(description="Where the owner downloads it: GET, with the access token")
    download_link: str = Field(
        description="Absolute and signed for this file: works in an <a href> with no Authorization header, "
        "for FILE_DOWNLOAD_URL_SECONDS; ask the list again for a fresh one"
    )
    size: int
    expires_at: datetime


class FileInfo(UploadedFile):
    model_config = examples(
        {
            **_UPLOADED,
            "name": "sketch.png",
            "contentType": "image/png",
            "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "createdAt": "2026-05-04T09:31:00Z",
        }
    )

    name: str
    content_type: str
    sha256: str
    created_at: datetime


class FileDeletion(CamelModel):
    file_id: uuid.UUID
    deleted: bool = Field(description="True once the object is gone; false if deletion is still under way")
