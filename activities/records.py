"""Database writes that workflows make: idempotent, so a retried activity changes nothing twice."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col
from temporalio import activity

from models.db import open_session
from models.enums import ContactStatus
from models.tables import Contact, File
from models.types import utcnow


class RecordActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _execute(self, statement: Any) -> None:
        async with open_session(self.engine) as db:
            await db.exec(statement)
            await db.commit()

    @activity.defn
    async def mark_contact_notified(self, contact_id: uuid.UUID) -> None:
        await self._execute(
            sa.update(Contact)
            .where(col(Contact.id) == contact_id, col(Contact.status) != ContactStatus.NOTIFIED)
            .values(status=ContactStatus.NOTIFIED, notified_at=utcnow())
        )

    @activity.defn
    async def mark_file_deleted(self, file_id: uuid.UUID) -> None:
        await self._execute(
            sa.update(File).where(col(File.id) == file_id, col(File.deleted_at).is_(None)).values(deleted_at=utcnow())
        )
