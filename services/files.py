"""Files: kept 24 hours (FileRetentionWorkflow's durable timer), then deleted. Upload, list, download, delete.

Nothing is ever stored without the workflow that deletes it: the row is committed, the timer started, and
only then is the object written; if storing fails, the timer is told to delete at once.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta

from activities.storage import storage_key
from api.uploads import ReceivedFile
from models.messages.files import RetainedFile
from models.tables import File
from models.types import utcnow
from services.accounts import Account
from services.runtime import Service
from services.staging import staged
from services.temporal import rpc_timeout, start_workflow
from workflows import search_attributes
from workflows.retention import START_POLICY, FileRetentionWorkflow, workflow_id


def download_path(file_id: uuid.UUID) -> str:
    """Where the owner downloads a file (GET, with the access token)."""
    return f"/api/files/{file_id}"


class FileService(Service):
    @asynccontextmanager
    async def keep(self, received: ReceivedFile, owner: Account) -> AsyncIterator[File]:
        """Store `received` for `owner` under its retention timer and yield the File. If the block raises,
        the timer deletes the object at once (the row stays, marked deleted by the workflow)."""
        file = File(
            user_id=owner.id,
            storage_key="",
            original_name=received.filename,
            content_type=received.content_type,
            size_bytes=received.size,
            sha256=received.sha256,
            expires_at=utcnow() + timedelta(hours=self.settings.file_retention_hours),
        )
        file.storage_key = storage_key(file.id)
        async with staged(self.database, file):
            handle = await start_workflow(
                self.temporal,
                self.settings,
                FileRetentionWorkflow.run,
                RetainedFile(
                    file_id=file.id, user_id=file.user_id, storage_key=file.storage_key, expires_at=file.expires_at
                ),
                id=workflow_id(file.id),
                policy=START_POLICY,
                search_attributes=search_attributes.for_resource(file.id, file.user_id),
                summary=f"Delete {file.original_name[:100]} at {file.expires_at:%Y-%m-%d %H:%M} UTC",
            )
        try:
            await self.storage.put_file(file.storage_key, received.path, file.content_type)
            yield file
        except BaseException:
            with suppress(Exception):
                await handle.signal(FileRetentionWorkflow.delete_now, rpc_timeout=rpc_timeout(self.settings))
            raise
