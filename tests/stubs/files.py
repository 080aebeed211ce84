"""Stubs of stored files' activities (an object deleted from storage, a file's row marked deleted), the token of
every stubbed download link, and the retention workflow's input."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from temporalio import activity

from activities.storage import storage_key
from models.messages.files import RetainedFile
from stubs.base import Stubs

DOWNLOAD_TOKEN = "stub-download-token"
PREVIEW_TOKEN = "stub-preview-token"
"""The download token of every file a stub packages (a prototype, an export)."""


class FileStubs(Stubs):
    def all(self) -> list[Callable[..., Any]]:
        return [self.mark_file_deleted, self.delete_object]

    @activity.defn(name="mark_file_deleted")
    async def mark_file_deleted(self, file_id: uuid.UUID) -> None:
        await self._note(file_id)

    @activity.defn(name="delete_object")
    async def delete_object(self, key: str) -> None:
        await self._note(key)


def retained_file(expires_at: datetime) -> RetainedFile:
    file_id = uuid.uuid4()
    return RetainedFile(file_id=file_id, user_id=uuid.uuid4(), storage_key=storage_key(file_id), expires_at=expires_at)
