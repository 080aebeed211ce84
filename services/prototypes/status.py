"""A prototype's and a revision's status: live from its workflow while it runs, the stored row after, or when no
worker answers. A long poll reads the row, lets the connection go, waits on the workflow, then reads again."""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import suppress

from sqlmodel import col, select
from temporalio.client import WorkflowFailureError, WorkflowQueryFailedError
from temporalio.service import RPCError

from models.api.prototypes import PrototypeView, RevisionView
from models.enums import PrototypeStatus
from models.messages.prototypes import PendingApproval
from models.prompts import PIPELINE
from models.tables import AIResponse, Prototype
from services.accounts import Account
from services.errors import NotFound
from services.prototypes.records import PrototypeRecords
from services.prototypes.views import UNDER_WAY, prototype_view, revision_view, stored_progress
from services.temporal import rpc_timeout
from services.waiting import wait_for_caller
from workflows.prototype import PrototypeWorkflow, workflow_id
from workflows.prototype_steps import call_key
from workflows.revision import PrototypeRevisionWorkflow
from workflows.revision import workflow_id as revision_workflow_id

log = logging.getLogger(__name__)

LIST_LIMIT = 100
MAX_WAIT_SECONDS = 60


class PrototypeStatusReads(PrototypeRecords):
    """Status answers: a prototype (long-polled if asked), a revision, the account's list."""

    async def get(
        self, account: Account, prototype_id: uuid.UUID, *, wait: float = 0, gone: asyncio.Event | None = None
    ) -> PrototypeView:
        """While the pipeline runs: its live progress (the workflow's query). After: the stored result. With
        `wait`, hold the answer up to that many seconds for the pipeline to finish (a long poll), holding no
        database connection meanwhile; CallerGone, the wait cancelled, once `gone` is set. Someone else's
        prototype is not found."""
        prototype = await self._owned(account, prototype_id)
        if prototype.status not in UNDER_WAY:
            return await self._view(account, prototype, stored_progress(prototype))
        handle = self.temporal.get_workflow_handle_for(PrototypeWorkflow.run, workflow_id(prototype_id))
        if wait:
            # Still running, failed, or Temporal out of reach: in every case the row says where things stand.
            with suppress(TimeoutError, WorkflowFailureError, RPCError):
                await wait_for_caller(handle.result(), wait, gone, what="prototype")
            prototype = await self._owned(account, prototype_id)
            if prototype.status not in UNDER_WAY:
                return await self._view(account, prototype, stored_progress(prototype))
        try:
            live = await handle.query(PrototypeWorkflow.progress, rpc_timeout=rpc_timeout(self.settings))
        except (RPCError, WorkflowQueryFailedError) as err:  # no worker to answer right now: the row answers
            log.warning("prototype %s: live progress unavailable (%s); answering from the database", prototype_id, err)
            live = stored_progress(prototype)
            if prototype.status == PrototypeStatus.AWAITING_APPROVAL:
                live.approval = await self._stored_approval(prototype_id)
        return await self._view(account, prototype, live)

    async def revision(self, account: Account, prototype_id: uuid.UUID, number: int) -> RevisionView:
        """One revision: live while it runs (its workflow's query), as stored after. Someone else's prototype, or
        a revision it does not have, is not found."""
        await self._owned(account, prototype_id)
        found = (await self._revisions([prototype_id])).get(prototype_id, [])
        row = next((revision for revision in found if revision.number == number), None)
        if row is None:
            raise NotFound("Revision")
        if row.status not in UNDER_WAY:
            return revision_view(self.settings, row)
        handle = self.temporal.get_workflow_handle_for(
            PrototypeRevisionWorkflow.run, revision_workflow_id(prototype_id, number)
        )
        try:
            live = await handle.query(PrototypeRevisionWorkflow.progress, rpc_timeout=rpc_timeout(self.settings))
        except (RPCError, WorkflowQueryFailedError) as err:  # no worker to answer right now: the row answers
            log.warning("revision %s of %s: live progress unavailable (%s)", number, prototype_id, err)
            return revision_view(self.settings, row)
        return revision_view(self.settings, row, live)

    async def list_own(self, account: Account) -> list[PrototypeView]:
        """The account's prototypes, newest first, as last recorded (the status of one is live)."""
        statement = (
            select(Prototype)
            .where(col(Prototype.user_id) == account.id)
            .order_by(col(Prototype.created_at).desc())
            .limit(LIST_LIMIT)
        )
        async with self.database.session() as db:
            prototypes = (await db.exec(statement)).all()
        templated = await self._templated([prototype.id for prototype in prototypes])
        revised = await self._revisions([prototype.id for prototype in prototypes])
        return [
            prototype_view(
                self.settings,
                prototype,
                stored_progress(prototype),
                template=prototype.id in templated,
                revisions=revised.get(prototype.id, []),
                session_id=account.session_id,
            )
            for prototype in prototypes
        ]

    async def _stored_approval(self, prototype_id: uuid.UUID) -> PendingApproval | None:
        """The requirements awaiting approval as their recorded call holds them, when the workflow cannot be asked;
        when the answer is due is the workflow's to say."""
        step = PIPELINE[0].name
        statement = select(AIResponse.response).where(col(AIResponse.call_key) == call_key(prototype_id, step))
        async with self.database.session() as db:
            answer = (await db.exec(statement)).first()
        return PendingApproval.of(step, answer, answer_by=None) if answer is not None else None
