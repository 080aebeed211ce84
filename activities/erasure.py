"""Erasure's activities: revoke, stop the user's workflows, delete their objects, rows, mail and histories; and,
once their keeping period is over, the anonymised payments.

Each is idempotent (a retry or a resumed erasure finds less to do and does it again harmlessly). Payments are
kept for the accounting period, anonymised: moved to one tombstone account (the foreign key stays valid, the
row no longer names anybody), their idempotency key and gateway details dropped, the date until which they
must be kept written in their details.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.utils
import re
import secrets
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, delete, select, update
from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.storage import Storage
from models import search_attributes
from models.db import insert_if_absent, open_session
from models.messages.privacy import (
    DeleteHistories,
    ErasedRows,
    ErasureCounts,
    ErasureSubject,
    PurgeKeptPayments,
    StoppedWorkflows,
    StopWorkflows,
)
from models.tables import (
    AIResponse,
    Contact,
    EmailDelivery,
    File,
    IdempotencyKey,
    Payment,
    Prototype,
    PrototypeRevision,
    Session,
    User,
    contacts_owned_by,
    verified_address,
)
from models.types import utcnow
from settings import Settings

TOMBSTONE_USER_ID = uuid.UUID("00000000-0000-4000-8000-00000000e4a5")
"""The account every anonymised payment belongs to: it has no sessions and a password nobody knows."""
TOMBSTONE_EMAIL = "erased-accounts@statex.invalid"
RETENTION_WORKFLOW = "FileRetentionWorkflow"
ERASED = "(erased)"
_POLL = 0.5


def user_workflows(user_id: uuid.UUID, *, running: bool, contact_key: str | None = None) -> str:
    """The visibility query for the user's workflows, and with `contact_key` (given only for a verified address)
    those of contact messages sent from their address without signing in: never one that another account sent
    naming the address, which carries that account's id (the key is a hex digest: nothing in it can break the
    quoting)."""
    user = search_attributes.USER_ID.name
    query = f"{user} = '{user_id}'"
    if contact_key is not None:
        query = f"({query} OR ({search_attributes.CONTACT_KEY.name} = '{contact_key}' AND {user} IS NULL))"
    return f"{query} AND ExecutionStatus = 'Running'" if running else query


def _kept_until(before: date) -> tuple[Any, ...]:
    """Anonymised payments (the tombstone's) to be kept until a day before `before` (ISO dates sort as text)."""
    return (
        col(Payment.user_id) == TOMBSTONE_USER_ID,
        col(Payment.details)["keep_until"].as_string() < before.isoformat(),
    )


_CONTACT_MESSAGE = re.compile(r"^contact-([0-9a-f-]{36})-")
"""A contact message's emails (`contact-<contact id>-<kind>`): they belong to whoever owns the contact row."""


def contact_of(message_id: str) -> uuid.UUID | None:
    found = _CONTACT_MESSAGE.match(message_id)
    try:
        return uuid.UUID(found.group(1)) if found else None
    except ValueError:
        return None


def _addressed_to(path: Path, address: str) -> bool:
    with path.open("rb") as handle:
        headers = email.parser.BytesHeaderParser().parse(handle)
    fields = [*headers.get_all("To", []), *headers.get_all("Reply-To", [])]
    return any(found.lower() == address.lower() for _, found in email.utils.getaddresses(fields))


class ErasureActivities:
    def __init__(self, temporal: Client, storage: Storage, engine: AsyncEngine, settings: Settings) -> None:
        self.temporal = temporal
        self.storage = storage
        self.engine = engine
        self.settings = settings

    async def _execute(self, db: Any, statement: Any) -> int:
        return int((await db.exec(statement)).rowcount)

    @activity.defn
    async def read_erasure_subject(self, user_id: uuid.UUID) -> ErasureSubject:
        async with open_session(self.engine) as db:
            user = await db.get(User, user_id)
        if user is None:
            return ErasureSubject(user_id=user_id, email=None)
        # Workflows of anonymous messages from the address are the account's only once it proved the address
        verified = verified_address(user)
        key = search_attributes.contact_key(self.settings, verified) if verified is not None else None
        return ErasureSubject(user_id=user_id, email=user.email, contact_key=key)

    @activity.defn
    async def revoke_all_sessions(self, user_id: uuid.UUID) -> int:
        async with open_session(self.engine) as db:
            revoked = await self._execute(
                db,
                update(Session)
                .where(col(Session.user_id) == user_id, col(Session.revoked_at).is_(None))
                .values(revoked_at=utcnow(), revoke_reason="erasure"),
            )
            await db.commit()
        return revoked

    @activity.defn
    async def stop_user_workflows(self, stop: StopWorkflows) -> StoppedWorkflows:
        """Each running file timer is told to delete its object now; every other running workflow of the user
        (prototypes and their revisions, chats, checkouts, exports) is cancelled, and terminated if it has not
        closed within the grace period (one with no worker to run it never would)."""
        stopped = StoppedWorkflows(cancelled=[], terminated=[], files_deleted_early=[])
        query = user_workflows(stop.user_id, running=True, contact_key=stop.contact_key)
        running = [found async for found in self.temporal.list_workflows(query)]
        for found in running:
            handle = self.temporal.get_workflow_handle(found.id, run_id=found.run_id)
            try:
                if found.workflow_type == RETENTION_WORKFLOW:
                    await handle.signal("delete_now")
                    stopped.files_deleted_early.append(found.id)
                else:
                    await handle.cancel()
                    stopped.cancelled.append(found.id)
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
        deadline = asyncio.get_running_loop().time() + stop.grace.total_seconds()
        while True:
            still = [found for found in running if await self._running(found.id, found.run_id)]
            if not still or asyncio.get_running_loop().time() >= deadline:
                break
            activity.heartbeat(len(still))
            await asyncio.sleep(_POLL)
        for found in still:
            try:
                await self.temporal.get_workflow_handle(found.id, run_id=found.run_id).terminate(
                    reason="the account was erased"
                )
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
            stopped.terminated.append(found.id)
        return stopped

    async def _running(self, workflow_id: str, run_id: str | None) -> bool:
        try:
            described = await self.temporal.get_workflow_handle(workflow_id, run_id=run_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return described.status == WorkflowExecutionStatus.RUNNING

    @activity.defn
    async def delete_stored_objects(self, user_id: uuid.UUID) -> int:
        """Every object a file row of the user names, whether or not its timer has already run: deleting a
        missing object is a no-op, so this is the backstop for a timer that was terminated."""
        async with open_session(self.engine) as db:
            keys = list((await db.exec(select(File.storage_key).where(col(File.user_id) == user_id))).all())
        for key in keys:
            await self.storage.delete(key)
            activity.heartbeat(key)
        return len(keys)

    @activity.defn
    async def erase_rows(self, rows: ErasedRows) -> ErasureCounts:
        """One transaction: payments anonymised, everything else that names the user deleted, the user last."""
        user_id = rows.user_id
        deleted: dict[str, int] = {}
        now = utcnow()
        keep_until = now.replace(year=now.year + rows.keep_payments_years, day=min(now.day, 28)).date()
        async with open_session(self.engine) as db:
            await insert_if_absent(
                db,
                User,
                {
                    "id": TOMBSTONE_USER_ID,
                    "email": TOMBSTONE_EMAIL,
                    "name": None,
                    "password_hash": bcrypt.hashpw(secrets.token_hex(32).encode(), bcrypt.gensalt(4)).decode(),
                },
            )
            anonymised = await self._execute(
                db,
                update(Payment)
                .where(col(Payment.user_id) == user_id)
                .values(
                    user_id=TOMBSTONE_USER_ID, idempotency_key=None, details={"keep_until": keep_until.isoformat()}
                ),
            )
            # Whether payments are kept until that day (this erasure's, or a retry's whose first attempt committed)
            kept = (await db.exec(select(Payment.id).where(*_kept_until(keep_until + timedelta(days=1))))).first()
            # Read here, not carried: a retry after the user row went finds no address to link anything by
            address = verified_address(await db.get(User, user_id))
            statements: dict[str, Any] = {
                "ai_responses": delete(AIResponse).where(col(AIResponse.user_id) == user_id),
                "prototype_revisions": delete(PrototypeRevision).where(col(PrototypeRevision.user_id) == user_id),
                "prototypes": delete(Prototype).where(col(Prototype.user_id) == user_id),
                "files": delete(File).where(col(File.user_id) == user_id),
                "contacts": delete(Contact).where(contacts_owned_by(user_id, address)),
                "sessions": delete(Session).where(col(Session.user_id) == user_id),
                "idempotency_keys": delete(IdempotencyKey).where(col(IdempotencyKey.scope).contains(str(user_id))),
                "users": delete(User).where(col(User.id) == user_id),
            }
            for table, statement in statements.items():
                deleted[table] = await self._execute(db, statement)
            if rows.email:
                deleted["email_deliveries"] = await self._forget_deliveries(db, rows.email)
            await db.commit()
        return ErasureCounts(
            deleted=deleted, payments_anonymised=anonymised, keep_until=keep_until if kept is not None else None
        )

    async def _forget_deliveries(self, db: Any, address: str) -> int:
        """The delivery rows of mail to the address, but those of a contact message whose row is still stored (after
        the account's own were deleted above): that message, and its mail, are someone else's."""
        to_address = sa.func.lower(col(EmailDelivery.recipient)).contains(address.strip().lower(), autoescape=True)
        found = list((await db.exec(select(EmailDelivery.message_id).where(to_address))).all())
        if not found:
            return 0
        kept = await self._kept_contacts(db, found)
        doomed = [message_id for message_id in found if contact_of(message_id) not in kept]
        if not doomed:
            return 0
        return await self._execute(db, delete(EmailDelivery).where(col(EmailDelivery.message_id).in_(doomed)))

    async def _kept_contacts(self, db: Any, message_ids: list[str]) -> set[uuid.UUID | None]:
        """Of the contact messages these emails are about, those still stored (so not the erased account's)."""
        ids = {found for found in map(contact_of, message_ids) if found is not None}
        if not ids:
            return set()
        return set((await db.exec(select(Contact.id).where(col(Contact.id).in_(ids)))).all())

    @activity.defn
    async def purge_kept_payments(self, purge: PurgeKeptPayments) -> int:
        """The anonymised payments whose keeping period has ended (this erasure's and any older one's): deleted.
        Deleting again finds nothing, so a retry is harmless."""
        async with open_session(self.engine) as db:
            purged = await self._execute(db, delete(Payment).where(*_kept_until(purge.kept_before)))
            await db.commit()
        activity.logger.info("%d anonymised payment records deleted after their keeping period", purged)
        return purged

    @activity.defn
    async def purge_outbox(self, address: str) -> int:
        """The outbox's messages to (or replying to) the address; the embedded mailer's only copy of them."""
        folder = self.settings.outbox_dir

        def addressed() -> list[Path]:
            if not folder.is_dir():
                return []
            return [path for path in sorted(folder.glob("*.eml")) if _addressed_to(path, address)]

        found = await asyncio.to_thread(addressed)
        # The rows were erased before this step: a contact message still stored is another account's (signed in
        # and naming the address), or an anonymous sender's the account never proved to be; its mail stays.
        async with open_session(self.engine) as db:
            kept = await self._kept_contacts(db, [path.stem for path in found])
        doomed = [path for path in found if contact_of(path.stem) not in kept]

        def purge() -> int:
            for path in doomed:
                path.unlink(missing_ok=True)
            return len(doomed)

        return await asyncio.to_thread(purge)

    @activity.defn
    async def forget_recipient(self, message_id: str) -> None:
        """The confirmation's delivery row stays (so it is never sent twice) without the address."""
        async with open_session(self.engine) as db:
            await self._execute(
                db,
                update(EmailDelivery).where(col(EmailDelivery.message_id) == message_id).values(recipient=ERASED),
            )
            await db.commit()

    @activity.defn
    async def delete_user_histories(self, histories: DeleteHistories) -> int:
        """Temporal's DeleteWorkflowExecution for every workflow carrying the user's id or their address's contact
        key (a still running one is terminated first by the server), and for those the erasure stopped. Deleting
        one already gone is a no-op, so a retry repeats harmlessly."""
        listed = self.temporal.list_workflows(
            user_workflows(histories.user_id, running=False, contact_key=histories.contact_key)
        )
        workflow_ids = {*histories.known, *[found.id async for found in listed]}
        for workflow_id in sorted(workflow_ids):
            request = DeleteWorkflowExecutionRequest(
                namespace=self.temporal.namespace, workflow_execution=WorkflowExecution(workflow_id=workflow_id)
            )
            try:
                await self.temporal.workflow_service.delete_workflow_execution(request)
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
            activity.heartbeat(workflow_id)
        return len(workflow_ids)
