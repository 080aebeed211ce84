"""FileRetentionWorkflow: every stored file is deleted when its lifetime ends, or earlier if its owner asks.

The seed deleted with a `setTimeout`, which every restart forgot. This timer is Temporal's: it survives restarts
of the API, the worker and the server, and the Temporal UI shows it with the file's deletion time.
"""

from __future__ import annotations

import uuid
from contextlib import suppress
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ParentClosePolicy

from workflows.timeouts import DATABASE_CALL, HEARTBEAT

with workflow.unsafe.imports_passed_through():
    from activities.records import RecordActivities
    from activities.storage import StorageActivities
    from models import search_attributes
    from models.messages.files import RetainedFile, RetentionStatus
    from workflows.starting import ONCE_PER_RESOURCE

DELETE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=10))


def workflow_id(file_id: uuid.UUID) -> str:
    return f"file-{file_id}"


START_POLICY = ONCE_PER_RESOURCE  # one file, one timer


@workflow.defn
class FileRetentionWorkflow:
    def __init__(self) -> None:
        self._file_id: uuid.UUID | None = None
        self._deletes_at: datetime | None = None
        self._deleted_at: datetime | None = None
        self._delete_requested = False

    @workflow.run
    async def run(self, file: RetainedFile) -> RetentionStatus:
        self._file_id = file.file_id
        if not self._delete_requested:  # a signal may arrive before the run starts
            self._deletes_at = file.expires_at
        workflow.set_current_details(f"Deletes {file.storage_key} at {self._deletes_at:%Y-%m-%d %H:%M:%S} UTC")
        remaining = file.expires_at - workflow.now()
        if remaining > timedelta(0):
            with suppress(TimeoutError):  # a timeout means the lifetime is up
                await workflow.wait_condition(
                    lambda: self._delete_requested, timeout=remaining, timeout_summary="retention timer"
                )
        await workflow.execute_activity_method(
            StorageActivities.delete_object,
            file.storage_key,
            start_to_close_timeout=timedelta(minutes=2),
            heartbeat_timeout=HEARTBEAT,
            retry_policy=DELETE_RETRY,
            summary="delete the stored object",
        )
        await workflow.execute_activity_method(
            RecordActivities.mark_file_deleted,
            file.file_id,
            start_to_close_timeout=DATABASE_CALL,
            retry_policy=DELETE_RETRY,
            summary="mark the file deleted",
        )
        self._deleted_at = workflow.now()
        return self.status()

    @workflow.signal
    def delete_now(self) -> None:
        """The owner deleted the file: no need to wait for the timer."""
        if self._deleted_at is None and not self._delete_requested:
            self._delete_requested = True
            self._deletes_at = workflow.now()

    @workflow.query
    def status(self) -> RetentionStatus:
        return RetentionStatus(
            file_id=self._file_id,
            deletes_at=self._deletes_at,
            deleted_at=self._deleted_at,
            deleted_early=self._delete_requested,
        )


async def retain_generated_file(
    file_id: uuid.UUID, user_id: uuid.UUID, key: str, expires_at: datetime, summary: str
) -> workflow.ChildWorkflowHandle[FileRetentionWorkflow, RetentionStatus]:
    """From a workflow that makes a file (a prototype's zip, a data export): start the file's retention timer
    as a child that outlives it, before the file is stored under `key`, so nothing is stored without its
    deletion."""
    return await workflow.start_child_workflow(
        FileRetentionWorkflow.run,
        RetainedFile(file_id=file_id, user_id=user_id, storage_key=key, expires_at=expires_at),
        id=workflow_id(file_id),
        parent_close_policy=ParentClosePolicy.ABANDON,
        search_attributes=search_attributes.for_resource(file_id, user_id),
        static_summary=summary,
    )
