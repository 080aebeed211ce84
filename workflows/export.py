"""ExportWorkflow: everything held about a user, zipped, kept 24 hours like any file, the link emailed.

As with a prototype's zip, the file's FileRetentionWorkflow starts (an abandoned child) before the zip is stored,
so nothing is stored without the timer that deletes it. The input carries ids only: the activity reads the rows,
and the address the link goes to, from the database. The status is the workflow's: `progress` while it runs,
its result once it has finished (readable without a worker), so no table is needed for it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.timeouts import HEARTBEAT

with workflow.unsafe.imports_passed_through():
    from activities.export import ExportActivities, export_file_id
    from activities.storage import storage_key
    from models.messages.email import EmailMessage
    from models.messages.privacy import ExportOrder, ExportPackage, ExportProgress, ExportStatus, PackagedExport
    from workflows.mail import send_email
    from workflows.retention import FileRetentionWorkflow, retain_generated_file
    from workflows.starting import ONCE_PER_RESOURCE

EXPORT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
EXPORT_DEADLINE = timedelta(minutes=30)


def workflow_id(export_id: uuid.UUID) -> str:
    return f"export-{export_id}"


START_POLICY = ONCE_PER_RESOURCE  # the id is a fresh export id: a repeat is a retried request


def ready_email(order: ExportOrder, packaged: PackagedExport, progress: ExportProgress) -> EmailMessage:
    link = f"{order.link_base_url.rstrip('/')}/api/files/{packaged.file_id}?token={packaged.download_token}"
    return EmailMessage(
        message_id=f"export-{order.export_id}-ready",
        to=[packaged.email],
        subject="Your Statex data export is ready",
        text=(
            "Hello,\n\nthe copy of everything Statex holds about you that you asked for is ready.\n\n"
            f"Download it until {progress.expires_at:%Y-%m-%d %H:%M} UTC; then it is deleted:\n{link}\n\n"
            "-- The Statex team"
        ),
    )


@workflow.defn
class ExportWorkflow:
    def __init__(self) -> None:
        self._progress = ExportProgress(export_id=None, status=ExportStatus.RUNNING)

    @workflow.run
    async def run(self, order: ExportOrder) -> ExportProgress:
        self._progress.export_id = order.export_id
        file_id = export_file_id(order.export_id)
        made_at = workflow.now()
        expires_at = made_at + order.file_lifetime
        key = storage_key(file_id, eu=order.eu_resident)
        retention = await retain_generated_file(
            file_id, order.user_id, key, expires_at, f"Delete the data export at {expires_at:%Y-%m-%d %H:%M} UTC"
        )
        package = ExportPackage(
            export_id=order.export_id,
            user_id=order.user_id,
            file_id=file_id,
            made_at=made_at,
            expires_at=expires_at,
            storage_key=key,
        )
        try:
            packaged = await workflow.execute_activity_method(
                ExportActivities.package_export,
                package,
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=HEARTBEAT,
                schedule_to_close_timeout=EXPORT_DEADLINE,
                retry_policy=EXPORT_RETRY,
                summary="gather, zip and store the user's data",
            )
        except ActivityError:
            await retention.signal(FileRetentionWorkflow.delete_now)  # whatever was stored goes now
            self._progress.status = ExportStatus.FAILED
            raise
        self._progress = ExportProgress(
            export_id=order.export_id, status=ExportStatus.COMPLETED, file_id=file_id, expires_at=expires_at
        )
        await send_email(ready_email(order, packaged, self._progress), "email the download link")
        return self._progress

    @workflow.query
    def progress(self) -> ExportProgress:
        return self._progress
