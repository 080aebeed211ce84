"""The reads every job on prototypes shares: a prototype's row and its owner, its revisions, whether a template
answered it, and its view. Each is one short unit of work; none holds a connection past its return."""

from __future__ import annotations

import uuid

from sqlmodel import col, select

from models.api.prototypes import PrototypeView
from models.enums import AIProvider
from models.messages.prototypes import PrototypeProgress
from models.tables import AIResponse, Prototype, PrototypeRevision
from services.accounts import Account
from services.errors import NotFound
from services.prototypes.views import prototype_view
from services.runtime import Service


class PrototypeRecords(Service):
    """The reads the commands, the status and the stream share."""

    async def _find(self, prototype_id: uuid.UUID) -> Prototype | None:
        async with self.database.session() as db:
            return await db.get(Prototype, prototype_id)

    async def _owned(self, account: Account, prototype_id: uuid.UUID) -> Prototype:
        prototype = await self._find(prototype_id)
        if prototype is None or prototype.user_id != account.id:
            raise NotFound("Prototype")
        return prototype

    async def _view(self, account: Account, prototype: Prototype, progress: PrototypeProgress) -> PrototypeView:
        template = prototype.id in await self._templated([prototype.id])
        revised = await self._revisions([prototype.id])
        return prototype_view(
            self.settings,
            prototype,
            progress,
            template=template,
            revisions=revised.get(prototype.id, []),
            session_id=account.session_id,
        )

    async def _revisions(self, prototype_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[PrototypeRevision]]:
        """The prototypes' revisions, oldest first, in one read."""
        if not prototype_ids:
            return {}
        statement = (
            select(PrototypeRevision)
            .where(col(PrototypeRevision.prototype_id).in_(prototype_ids))
            .order_by(col(PrototypeRevision.number))
        )
        async with self.database.session() as db:
            rows = (await db.exec(statement)).all()
        found: dict[uuid.UUID, list[PrototypeRevision]] = {}
        for row in rows:
            found.setdefault(row.prototype_id, []).append(row)
        return found

    async def _templated(self, prototype_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """The prototypes whose every recorded model call the offline template answered: no model was asked."""
        if not prototype_ids:
            return set()
        statement = (
            select(AIResponse.prototype_id, AIResponse.tier)
            .where(col(AIResponse.prototype_id).in_(prototype_ids))
            .distinct()
        )
        async with self.database.session() as db:
            rows = (await db.exec(statement)).all()
        providers: dict[uuid.UUID, set[AIProvider]] = {}
        for prototype_id, provider in rows:
            if prototype_id is not None:
                providers.setdefault(prototype_id, set()).add(AIProvider(provider))
        return {prototype_id for prototype_id, used in providers.items() if used == {AIProvider.OFFLINE}}
