"""The user's own data: a copy of all of it (ExportWorkflow), and its erasure (ErasureWorkflow).

An export's status is its workflow's, not a table's: a row would be one more thing naming the user for erasure to
find, and the workflow already knows it (describe while it runs, its stored result once it has finished, which
Temporal answers without a worker). Ownership is the workflow's `StatexUserId` search attribute.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlmodel import select
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from models import search_attributes
from models.api.privacy import ErasureAccepted, ExportAccepted, ExportView
from models.messages.privacy import ErasureOrder, ExportOrder, ExportStatus
from models.tables import User
from services.accounts import BAD_CREDENTIALS, Account
from services.errors import NotFound, Unauthorized
from services.files import download_path, kept_in_eu
from services.runtime import Service
from services.security import verify_password
from services.temporal import reaching_temporal, rpc_timeout, start_workflow
from workflows import erasure as erasure_workflow
from workflows import export as export_workflow
from workflows.erasure import ErasureWorkflow
from workflows.export import ExportWorkflow


def export_status_url(export_id: uuid.UUID) -> str:
    return f"/api/me/exports/{export_id}"


class PrivacyService(Service):
    async def export(self, account: Account) -> ExportAccepted:
        export_id = uuid.uuid4()
        order = ExportOrder(
            export_id=export_id,
            user_id=account.id,
            file_lifetime=timedelta(hours=self.settings.file_retention_hours),
            link_base_url=self.settings.public_api_url,
            eu_resident=kept_in_eu(self.settings, account),
        )
        await start_workflow(
            self.temporal,
            self.settings,
            ExportWorkflow.run,
            order,
            id=export_workflow.workflow_id(export_id),
            policy=export_workflow.START_POLICY,
            search_attributes=search_attributes.for_resource(export_id, account.id),
            summary="Export of a user's data",
        )
        return ExportAccepted(export_id=export_id, status="RUNNING", status_url=export_status_url(export_id))

    async def export_status(self, account: Account, export_id: uuid.UUID) -> ExportView:
        """Someone else's export, and one that never was, are the same 404."""
        handle = self.temporal.get_workflow_handle_for(ExportWorkflow.run, export_workflow.workflow_id(export_id))
        with reaching_temporal():
            try:
                described = await handle.describe(rpc_timeout=rpc_timeout(self.settings))
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    raise NotFound("Export") from err
                raise
            if described.typed_search_attributes.get(search_attributes.USER_ID) != str(account.id):
                raise NotFound("Export")
            view = ExportView(export_id=export_id, status="RUNNING", status_url=export_status_url(export_id))
            if described.status == WorkflowExecutionStatus.RUNNING:
                return view
            try:
                result = await handle.result(rpc_timeout=rpc_timeout(self.settings))
            except WorkflowFailureError:
                return view.model_copy(update={"status": ExportStatus.FAILED.value})
        return view.model_copy(
            update={
                "status": result.status.value,
                "file_id": result.file_id,
                "download_url": download_path(result.file_id) if result.file_id else None,
                "expires_at": result.expires_at,
            }
        )

    async def erase(self, account: Account, password: str) -> ErasureAccepted:
        """The password again (a stolen access token alone must not erase an account), then the erasure, once:
        a second request while it runs, or after, gets the same workflow."""
        async with self.database.session() as db:
            password_hash = (await db.exec(select(User.password_hash).where(User.id == account.id))).first()
        if not await verify_password(password, password_hash, self.settings.bcrypt_rounds):
            raise Unauthorized(BAD_CREDENTIALS)
        order = ErasureOrder(
            user_id=account.id,
            keep_payments_years=self.settings.erasure_keep_payments_years,
            cancel_grace=timedelta(seconds=self.settings.erasure_cancel_grace_seconds),
        )
        workflow_id = erasure_workflow.workflow_id(account.id)
        await start_workflow(
            self.temporal,
            self.settings,
            ErasureWorkflow.run,
            order,
            id=workflow_id,
            policy=erasure_workflow.START_POLICY,
            search_attributes=search_attributes.for_resource(erasure_workflow.erasure_id(account.id)),
            summary="Erasure of an account",
        )
        return ErasureAccepted(erasure_id=workflow_id)
