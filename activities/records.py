"""Database writes that workflows make: idempotent, so a retried activity changes nothing twice."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.db import open_session
from models.enums import ContactStatus, PrototypeStatus
from models.messages.prototypes import PrototypeMilestone, preview_column
from models.tables import AIResponse, Contact, File, Prototype
from models.types import utcnow
from observability import metrics

_FINISHED = frozenset({PrototypeStatus.COMPLETED, PrototypeStatus.FAILED, PrototypeStatus.CANCELLED})


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
        marked = await self._execute(
            sa.update(File).where(col(File.id) == file_id, col(File.deleted_at).is_(None)).values(deleted_at=utcnow())
        )
        if marked:  # a retry finds it marked already and counts nothing
            metrics.files_deleted.inc()
            activity.logger.info("file %s deleted by retention", file_id, extra={"file_id": str(file_id)})

    @activity.defn
    async def record_prototype_milestone(self, milestone: PrototypeMilestone) -> None:
        """Absolute values, so writing a milestone twice is harmless. The API commits the row right after
        starting the workflow: until it has, this fails and Temporal retries."""
        values: dict[str, Any] = milestone.model_dump(
            exclude={"prototype_id", "idea", "steps_done", "verification", "preview"}
        ) | {"updated_at": utcnow(), "preview": preview_column(milestone.preview)}
        if milestone.verification is not None:
            values["verification"] = milestone.verification.model_dump(mode="json")
        if milestone.steps_done is not None:
            values["steps_done"] = milestone.steps_done
        if milestone.idea is not None:
            values["idea"] = milestone.idea
        if milestone.status == PrototypeStatus.COMPLETED:
            values["completed_at"] = utcnow()
        async with open_session(self.engine) as db:
            status_before = (
                await db.exec(select(Prototype.status).where(Prototype.id == milestone.prototype_id).with_for_update())
            ).first()
            if status_before is None:
                raise ApplicationError(
                    f"prototype {milestone.prototype_id} is not in the database (yet)", type="PrototypeNotFound"
                )
            await db.exec(sa.update(Prototype).where(col(Prototype.id) == milestone.prototype_id).values(**values))
            await db.commit()
            if milestone.status in _FINISHED and status_before != milestone.status:  # once, however often retried
                provider = await self._last_provider(db, milestone.prototype_id)
                metrics.prototypes_finished.labels(provider, milestone.status.value).inc()

    @staticmethod
    async def _last_provider(db: AsyncSession, prototype_id: uuid.UUID) -> str:
        """The provider of the prototype's latest AI call: who served it, after any fallbacks."""
        tier = (
            await db.exec(
                select(AIResponse.tier)
                .where(AIResponse.prototype_id == prototype_id)
                .order_by(col(AIResponse.created_at).desc())
                .limit(1)
            )
        ).first()
        return tier.lower() if tier else "none"
