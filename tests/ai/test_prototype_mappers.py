"""The mappers between a prototype's shapes copy by field name: the workflow's progress to the milestone the row
records, the row back to the progress the status shows, a revision's row and live progress to its view. These
tests fail when a field the shapes share stops being carried (a rename on one side, say)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from models.api.prototypes import RevisionView
from models.enums import AIProvider, PrototypeStatus
from models.messages.prototypes import (
    PrototypeMilestone,
    PrototypeProgress,
    RevisionMilestone,
    RevisionProgress,
    shared_fields,
)
from models.tables import Prototype, PrototypeRevision
from services.prototypes.views import revision_view, stored_progress
from settings import Settings

NOW = datetime(2026, 5, 4, 9, 40, tzinfo=UTC)


def progress() -> PrototypeProgress:
    return PrototypeProgress(
        prototype_id=uuid.uuid4(),
        status=PrototypeStatus.RUNNING,
        idea="An app that books climbing gyms",
        steps=["requirements", "plan", "code", "tests", "review", "package"],
        steps_done=["requirements", "plan"],
        current_step="code",
        trying=AIProvider.OPENAI,
        progress_percent=33,
        cost_usd_micros=1840,
        file_id=uuid.uuid4(),
        error="a reason",
        verified=False,
        fix_rounds=2,
    )


def revision_progress(prototype_id: uuid.UUID) -> RevisionProgress:
    return RevisionProgress(
        prototype_id=prototype_id,
        number=1,
        status=PrototypeStatus.COMPLETED,
        feedback="Add a waiting list",
        steps=["revise", "package"],
        steps_done=["revise", "package"],
        current_step=None,
        trying=AIProvider.OPENAI,
        cost_usd_micros=950,
        file_id=uuid.uuid4(),
        error=None,
        verified=True,
        fix_rounds=1,
    )


def test_a_milestone_records_every_field_of_the_progress_it_shares() -> None:
    live = progress()
    milestone = PrototypeMilestone.of(live, idea=None, verification=None)
    assert shared_fields(PrototypeMilestone, PrototypeProgress) == set(PrototypeMilestone.model_fields) - {
        "verification"
    }
    for name in set(PrototypeMilestone.model_fields) - {"idea", "verification"}:
        assert getattr(milestone, name) == getattr(live, name), name
    assert milestone.idea is None  # set only once a voice message is transcribed


def test_a_revision_milestone_records_every_field_of_the_progress_it_shares() -> None:
    live = revision_progress(uuid.uuid4())
    revision_id = uuid.uuid4()
    milestone = RevisionMilestone.of(live, revision_id=revision_id, files={"main.py": "print()"})
    assert shared_fields(RevisionMilestone, RevisionProgress) == set(RevisionMilestone.model_fields) - {
        "revision_id",
        "files",
    }
    for name in shared_fields(RevisionMilestone, RevisionProgress):
        assert getattr(milestone, name) == getattr(live, name), name
    assert (milestone.revision_id, milestone.files) == (revision_id, {"main.py": "print()"})


def test_the_stored_progress_is_what_the_row_recorded() -> None:
    recorded = PrototypeMilestone.of(progress(), idea=None, verification=None)
    assert recorded.prototype_id is not None
    row = Prototype(
        id=recorded.prototype_id,
        user_id=uuid.uuid4(),
        idea="An app that books climbing gyms",
        **recorded.model_dump(exclude={"prototype_id", "idea", "verification"}),
    )
    stored = stored_progress(row)
    assert stored.prototype_id == row.id
    for name in shared_fields(PrototypeMilestone, PrototypeProgress) - {"prototype_id", "idea"}:
        assert getattr(stored, name) == getattr(recorded, name), name
    assert stored.trying is None  # who is being asked right now is only the workflow's to say


def test_a_running_revision_is_shown_as_its_workflow_says_and_named_as_its_row_says(settings: Settings) -> None:
    row = PrototypeRevision(
        prototype_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        number=1,
        feedback="Add a waiting list",
        status=PrototypeStatus.RUNNING,
        current_step="revise",
        cost_usd_micros=100,
        created_at=NOW,
    )
    live = revision_progress(row.prototype_id)
    view = revision_view(settings, row, live)
    fields_of_progress = shared_fields(RevisionView, RevisionProgress) - {"prototype_id", "number", "feedback"}
    for name in fields_of_progress:
        assert getattr(view, name) == getattr(live, name), name
    assert (view.number, view.feedback, view.created_at) == (1, "Add a waiting list", NOW)
    assert view.cost_usd == 950 / 1_000_000
    assert view.download_url == f"/api/files/{live.file_id}"  # completed: the zip's links

    stored = revision_view(settings, row)  # the row alone: its own milestone, no zip yet
    assert (stored.status, stored.cost_usd_micros, stored.trying, stored.download_url) == (
        PrototypeStatus.RUNNING,
        100,
        None,
        None,
    )
