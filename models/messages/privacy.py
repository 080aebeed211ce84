"""Export and erasure as they cross Temporal: ids in, ids and counts out; the address only where it is mailed to."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel


class ExportStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class ExportOrder(BaseModel):
    export_id: uuid.UUID
    user_id: uuid.UUID
    file_lifetime: timedelta
    link_base_url: str
    eu_resident: bool = False
    """An EU_COMPLIANCE user's export: the zip is kept in the EU (absent from older histories: False)."""


class ExportPackage(BaseModel):
    """What the export activity zips: everything held about `user_id`, stored as the file `file_id`."""

    export_id: uuid.UUID
    user_id: uuid.UUID
    file_id: uuid.UUID
    made_at: datetime
    expires_at: datetime
    storage_key: str | None = None
    """Where the zip goes; None (older histories): storage_key(file_id)."""


class PackagedExport(BaseModel):
    file_id: uuid.UUID
    size: int
    sha256: str
    names: list[str]
    download_token: str
    email: str
    """Read from the database by the activity, so the workflow's input carries no address."""


class ExportProgress(BaseModel):
    export_id: uuid.UUID | None
    status: ExportStatus
    file_id: uuid.UUID | None = None
    expires_at: datetime | None = None


class ErasureOrder(BaseModel):
    user_id: uuid.UUID
    keep_payments_years: int
    cancel_grace: timedelta
    """How long a cancelled workflow gets to clean up (a checkout cancels at its gateway) before it is terminated."""


class ErasureSubject(BaseModel):
    """Who is being forgotten, read once at the start: the address is needed after its rows are gone."""

    user_id: uuid.UUID
    email: str | None
    """None when the user row was already gone (an erasure resumed after its rows were deleted)."""
    contact_key: str | None = None
    """The address's `StatexContactKey`, which finds contact workflows sent from it without an account (absent
    from older histories: None)."""


class StopWorkflows(BaseModel):
    user_id: uuid.UUID
    grace: timedelta
    contact_key: str | None = None
    """Also the workflows of contact messages sent from the address, signed in or not."""


class StoppedWorkflows(BaseModel):
    cancelled: list[str]
    terminated: list[str]
    files_deleted_early: list[str]


class DeleteHistories(BaseModel):
    user_id: uuid.UUID
    known: list[str]
    """The workflows the erasure stopped: deleted by id too, as visibility may not list one that just closed."""
    contact_key: str | None = None
    """Also the histories of contact messages sent from the address, signed in or not."""


class ErasedRows(BaseModel):
    user_id: uuid.UUID
    email: str | None
    keep_payments_years: int


class ErasureCounts(BaseModel):
    deleted: dict[str, int]
    payments_anonymised: int
    keep_until: date | None = None
    """When anonymised payments were kept: the date until which they must be (absent from older histories)."""


class KeptPayments(BaseModel):
    """KeptPaymentsWorkflow's input: an opaque erasure id and a date, nothing that names anybody."""

    erasure_id: uuid.UUID
    keep_until: date


class PurgeKeptPayments(BaseModel):
    kept_before: date
    """Anonymised payments kept until a day before this one are deleted."""


class ErasureProgress(BaseModel):
    user_id: uuid.UUID | None
    steps_done: list[str]
    finished: bool
