"""Database writes that workflows make: idempotent, so a retried activity changes nothing twice."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col
from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.db import open_session
from models.enums import ContactStatus, PrototypeStatus
from models.messages.prototypes import PrototypeMilestone
from models.tables import Contact, File, Prototype
from models.types import utcnow


class RecordActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _execute(self, statement: Any) -> int:
        """Run one statement; the number of rows it touched."""
        async with open_session(self.engine) as db:
            result = await db.exec(statement)
            await db.commit()
        return result.rowcount

    @activity.defn
    async def mark_contact_notified(self, contact_id: uuid.UUID) -> None:
        await self._execute(
            sa.update(Contact)
            .where(col(Contact.id) == contact_id, col(Contact.status) != ContactStatus.NOTIFIED)
            .values(status=ContactStatus.NOTIFIED, notified_at=utcnow())
        )

    @activity.defn
    async def mark_contact_failed(self, contact_id: uuid.UUID) -> None:
        """The team's email could not be sent: the message stays stored, marked for someone to read."""
        await self._execute(
            sa.update(Contact)
            .where(col(Contact.id) == contact_id, col(Contact.status) == ContactStatus.RECEIVED)
            .values(status=ContactStatus.FAILED)
        )

    @activity.defn
    async def mark_file_deleted(self, file_id: uuid.UUID) -> None:
        await self._execute(
            sa.update(File).where(col(File.id) == file_id, col(File.deleted_at).is_(None)).values(deleted_at=utcnow())
        )

    @activity.defn
    async def record_prototype_milestone(self, milestone: PrototypeMilestone) -> None:
        """Absolute values, so writing a milestone twice is harmless. The API commits the row right after
        starting the workflow: until it has, this fails and Temporal retries."""
        values: dict[str, Any] = milestone.model_dump(exclude={"prototype_id", "idea", "steps_done"}) | {
            "updated_at": utcnow()
        }
        if milestone.steps_done is not None:
            values["steps_done"] = milestone.steps_done
        if milestone.idea is not None:
            values["idea"] = milestone.idea
        if milestone.status == PrototypeStatus.COMPLETED:
            values["completed_at"] = utcnow()
        touched = await self._execute(
            sa.update(Prototype).where(col(Prototype.id) == milestone.prototype_id).values(**values)
        )
        if touched == 0:
            raise ApplicationError(f"prototype {milestone.prototype_id} is not in the database (yet)")
