"""The mappers to the API's shapes, one per source: the workflow's messages (live) or the rows (stored).

The shapes stay apart (a row never crosses Temporal; an API answer is no Temporal message): only the copying is
here, by field name where two shapes share one, so that a field added to both needs no change to a mapper.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from models.api.prototypes import (
    ApprovalView,
    PrototypeAccepted,
    PrototypeEventView,
    PrototypeView,
    RevisionAccepted,
    RevisionView,
)
from models.enums import PrototypeStatus
from models.messages.prototypes import (
    ON_APPROVE,
    ON_DECLINE,
    ON_EDIT,
    PendingApproval,
    PrototypeEvent,
    PrototypeEventKind,
    PrototypeProgress,
    RevisionProgress,
    StoredPreview,
    shared_fields,
)
from models.tables import Prototype, PrototypeRevision
from services.prototypes.links import approval_url, events_url, revision_status_url, status_url, zip_links
from settings import Settings
from workflows.prototype import planned_steps, workflow_id
from workflows.revision import workflow_id as revision_workflow_id

UNDER_WAY = (PrototypeStatus.QUEUED, PrototypeStatus.RUNNING, PrototypeStatus.AWAITING_APPROVAL)
"""While its workflow runs, it answers for a prototype or revision; after, the row does."""
_MICROS_PER_USD = 1_000_000
_PROGRESS_IN_ROW = shared_fields(PrototypeProgress, Prototype) - {"steps_done"}
"""What the stored progress copies from the row; the steps are worked out (older rows lack `steps_done`)."""
_REVISION_FROM_ROW = shared_fields(RevisionView, PrototypeRevision)
_REVISION_LIVE = shared_fields(RevisionView, RevisionProgress) - {"prototype_id", "number", "feedback"}
"""While a revision runs, where it stands is the workflow's to say; which revision it is, the row's."""
_ENDINGS: dict[PrototypeStatus, PrototypeEventKind] = {
    PrototypeStatus.COMPLETED: "completed",
    PrototypeStatus.CANCELLED: "cancelled",
}


# --- from the rows: the workflow's messages as its last milestone left them ----------------------------------


def stored_progress(prototype: Prototype) -> PrototypeProgress:
    """The workflow's progress as its last recorded milestone left it in the row: the same shape as the live
    query. A row whose milestones predate `steps_done` (older runs) counts the steps before the current one; one
    that reviewed without a tests step was made before the tests agent, and lists the steps it went through."""
    recorded = prototype.steps_done or []
    in_turn = "review" in recorded and "tests" not in recorded
    steps = planned_steps(voice=prototype.source == "voice", parallel=not in_turn)
    if prototype.steps_done is not None:
        done = list(prototype.steps_done)
    elif prototype.status == PrototypeStatus.COMPLETED:
        done = steps
    elif prototype.current_step in steps:
        done = steps[: steps.index(prototype.current_step)]
    else:
        done = []
    return PrototypeProgress(
        **prototype.model_dump(include=_PROGRESS_IN_ROW),
        prototype_id=prototype.id,
        steps=steps,
        steps_done=done,
        trying=None,
    )


def stored_ending(prototype: Prototype) -> PrototypeEvent | None:
    """The last event as the row records it, once the pipeline has ended (None while it runs); its id is set by
    each stream: the one after the client's last."""
    if prototype.status in UNDER_WAY:
        return None
    completed = prototype.status == PrototypeStatus.COMPLETED
    return PrototypeEvent(
        id=1,
        kind=_ENDINGS.get(prototype.status, "failed"),
        at=prototype.completed_at or prototype.updated_at,
        step=None if completed else prototype.current_step,
        cost_usd_micros=prototype.cost_usd_micros,
        verified=prototype.verified,
        file_id=prototype.file_id,
        preview_file_id=StoredPreview.model_validate(prototype.preview).file_id if prototype.preview else None,
        preview_unavailable=prototype.preview_unavailable,
        error=prototype.error,
    )


# --- to the API's shapes ---------------------------------------------------------------------------------------


def accepted(settings: Settings, prototype: Prototype, session_id: uuid.UUID | None) -> PrototypeAccepted:
    return PrototypeAccepted(
        prototype_id=prototype.id,
        status=prototype.status,
        status_url=status_url(prototype.id),
        events_url=events_url(settings, prototype, session_id),
        workflow_id=workflow_id(prototype.id),
    )


def prototype_view(
    settings: Settings,
    prototype: Prototype,
    progress: PrototypeProgress,
    *,
    template: bool,
    revisions: Sequence[PrototypeRevision] = (),
    session_id: uuid.UUID | None,
) -> PrototypeView:
    """The one way a prototype is shown: the workflow's progress (live, or `stored_progress`), and the row's
    facts; the links to the zip and its picture once COMPLETED."""
    completed = progress.status == PrototypeStatus.COMPLETED
    preview_id = progress.preview.file_id if progress.preview is not None else None
    links = zip_links(settings, progress.file_id if completed else None, preview_id)
    return PrototypeView(
        **progress.model_dump(exclude={"prototype_id", "approval"}),
        approval=approval_view(prototype.id, progress.approval),
        prototype_id=prototype.id,
        source="voice" if prototype.source == "voice" else "text",
        template=template,
        cost_usd=progress.cost_usd_micros / _MICROS_PER_USD,
        download_url=links.download_url,
        download_link=links.download_link,
        preview_link=links.preview_link,
        events_url=events_url(settings, prototype, session_id),
        created_at=prototype.created_at,
        completed_at=prototype.completed_at,
        revisions=[revision_view(settings, revision) for revision in revisions],
    )


def revision_accepted(revision: PrototypeRevision) -> RevisionAccepted:
    return RevisionAccepted(
        prototype_id=revision.prototype_id,
        number=revision.number,
        status=revision.status,
        status_url=revision_status_url(revision.prototype_id, revision.number),
        workflow_id=revision_workflow_id(revision.prototype_id, revision.number),
    )


def revision_view(
    settings: Settings, revision: PrototypeRevision, live: RevisionProgress | None = None
) -> RevisionView:
    """A revision as its row last recorded it, or, while it runs, as its workflow says it stands (all of it from
    the workflow then: the row may not have caught up with the same milestone)."""
    shown = revision.model_dump(include=_REVISION_FROM_ROW)
    if live is not None:
        shown |= live.model_dump(include=_REVISION_LIVE)
    preview = StoredPreview.model_validate(shown["preview"]) if shown["preview"] is not None else None
    completed = shown["status"] == PrototypeStatus.COMPLETED
    links = zip_links(settings, shown["file_id"] if completed else None, preview.file_id if preview else None)
    return RevisionView(
        **shown,
        cost_usd=shown["cost_usd_micros"] / _MICROS_PER_USD,
        download_url=links.download_url,
        download_link=links.download_link,
        preview_link=links.preview_link,
    )


def approval_view(prototype_id: uuid.UUID, pending: PendingApproval | None) -> ApprovalView | None:
    """The requirements awaiting approval, where to answer, and what each answer does."""
    if pending is None:
        return None
    return ApprovalView(
        **pending.model_dump(),
        approval_url=approval_url(prototype_id),
        on_approve=ON_APPROVE,
        on_edit=ON_EDIT,
        on_decline=ON_DECLINE,
    )


def event_view(settings: Settings, prototype_id: uuid.UUID, event: PrototypeEvent) -> PrototypeEventView:
    """An event as the stream sends it: `completed` carries the zip's download URL and signed link,
    `approval_needed` the requirements to approve and what each answer does."""
    links = zip_links(settings, event.file_id if event.kind == "completed" else None, event.preview_file_id)
    return PrototypeEventView(
        **event.model_dump(exclude={"approval"}),
        approval=approval_view(prototype_id, event.approval),
        download_url=links.download_url,
        download_link=links.download_link,
        preview_link=links.preview_link,
    )
