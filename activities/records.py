"""Database writes that workflows make: idempotent, so a retried activity changes nothing twice."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col
from temporalio import activity

from models.db import open_session
from models.enums import ContactStatus
from models.tables import Contact
from models.types import utcnow


class RecordActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @activity.defn
    async def mark_contact_notified(self, contact_id: uuid.UUID) -> None:
        async with open_session(self.engine) as db:
            await db.exec(  # type: ignore[call-overload]
                sa.update(Contact)
                .where(col(Contact.id) == contact_id, col(Contact.status) != ContactStatus.NOTIFIED)
                .values(status=ContactStatus.NOTIFIED, notified_at=utcnow())
            )
            await db.commit()
