"""Stubs of an account's export and erasure activities: packaging the export, and every step of an erasure (the
subject, sessions, running workflows, stored objects, rows, the email outbox and histories, kept payments)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity

from models.messages.privacy import (
    DeleteHistories,
    ErasedRows,
    ErasureCounts,
    ErasureSubject,
    ExportPackage,
    PackagedExport,
    PurgeKeptPayments,
    StoppedWorkflows,
    StopWorkflows,
)
from stubs.base import Stubs
from stubs.files import DOWNLOAD_TOKEN

STUB_EMAIL = "someone@example.com"
"""The address of every stubbed account (an export's owner, an erasure's subject)."""


class AccountStubs(Stubs):
    def all(self) -> list[Callable[..., Any]]:
        return [
            self.package_export,
            self.read_erasure_subject,
            self.revoke_all_sessions,
            self.stop_user_workflows,
            self.delete_stored_objects,
            self.erase_rows,
            self.purge_outbox,
            self.forget_recipient,
            self.delete_user_histories,
            self.purge_kept_payments,
        ]

    @activity.defn(name="package_export")
    async def package_export(self, package: ExportPackage) -> PackagedExport:
        await self._note(package)
        return PackagedExport(
            file_id=package.file_id,
            size=1,
            sha256="0" * 64,
            names=["account.json"],
            download_token=DOWNLOAD_TOKEN,
            email=STUB_EMAIL,
        )

    @activity.defn(name="read_erasure_subject")
    async def read_erasure_subject(self, user_id: uuid.UUID) -> ErasureSubject:
        await self._note(user_id)
        return ErasureSubject(user_id=user_id, email=STUB_EMAIL)

    @activity.defn(name="revoke_all_sessions")
    async def revoke_all_sessions(self, user_id: uuid.UUID) -> int:
        await self._note(user_id)
        return 1

    @activity.defn(name="stop_user_workflows")
    async def stop_user_workflows(self, stop: StopWorkflows) -> StoppedWorkflows:
        await self._note(stop)
        return StoppedWorkflows(cancelled=["prototype-stub"], terminated=[], files_deleted_early=["file-stub"])

    @activity.defn(name="delete_stored_objects")
    async def delete_stored_objects(self, user_id: uuid.UUID) -> int:
        await self._note(user_id)
        return 1

    @activity.defn(name="erase_rows")
    async def erase_rows(self, rows: ErasedRows) -> ErasureCounts:
        await self._note(rows)
        keep_until = (datetime.now(UTC) + timedelta(days=365 * rows.keep_payments_years)).date()
        return ErasureCounts(deleted={"users": 1}, payments_anonymised=1, keep_until=keep_until)

    @activity.defn(name="purge_kept_payments")
    async def purge_kept_payments(self, purge: PurgeKeptPayments) -> int:
        await self._note(purge)
        return 1

    @activity.defn(name="purge_outbox")
    async def purge_outbox(self, address: str) -> int:
        await self._note(address)
        return 0

    @activity.defn(name="forget_recipient")
    async def forget_recipient(self, message_id: str) -> None:
        await self._note(message_id)

    @activity.defn(name="delete_user_histories")
    async def delete_user_histories(self, histories: DeleteHistories) -> int:
        await self._note(histories)
        return len(histories.known)
