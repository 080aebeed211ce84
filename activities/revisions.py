"""A revision's database reads and writes: the files it builds on, and its row's milestones.

The base is read from rows, never from a zip (zips expire after 24 hours): the latest completed revision before
this one keeps its merged files in its row; with none, the prototype's own files are its file-holding steps'
answers (the code step's) with its fix rounds' answers over them, as the prototype's zip merged them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.packaging import code_files
from models.db import open_session
from models.enums import PrototypeStatus
from models.messages.prototypes import RevisionBase, RevisionMilestone, RevisionOrder, preview_column
from models.prompts import FIX, PIPELINE
from models.tables import AIResponse, Prototype, PrototypeRevision
from models.types import utcnow

PLAN_STEP = "plan"
_FILE_STEPS = [step.name for step in PIPELINE if step.holds_files]


def _answer_order(step: str) -> tuple[int, int]:
    """The pipeline's file steps in their order, then the fix rounds by number."""
    if step in _FILE_STEPS:
        return 0, _FILE_STEPS.index(step)
    return 1, int(step.removeprefix(f"{FIX.name}-"))


class RevisionActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @activity.defn
    async def read_revision_base(self, order: RevisionOrder) -> RevisionBase:
        """The idea, the plan and the files revision `order.number` builds on. A read: retrying is harmless."""
        async with open_session(self.engine) as db:
            prototype = await db.get(Prototype, order.prototype_id)
            if prototype is None:
                raise ApplicationError("The prototype no longer exists", type="PrototypeGone", non_retryable=True)
            plan = (
                await db.exec(
                    select(AIResponse.response).where(
                        col(AIResponse.prototype_id) == order.prototype_id, col(AIResponse.step) == PLAN_STEP
                    )
                )
            ).first()
            previous = (
                await db.exec(
                    select(PrototypeRevision)
                    .where(
                        col(PrototypeRevision.prototype_id) == order.prototype_id,
                        col(PrototypeRevision.number) < order.number,
                        col(PrototypeRevision.status) == PrototypeStatus.COMPLETED,
                        col(PrototypeRevision.files).is_not(None),
                    )
                    .order_by(col(PrototypeRevision.number).desc())
                    .limit(1)
                )
            ).first()
            if previous is not None and previous.files is not None:
                return RevisionBase(
                    idea=prototype.idea, plan=plan or "", files=previous.files, revision=previous.number
                )
            answers = (
                await db.exec(
                    select(AIResponse.step, AIResponse.response).where(
                        col(AIResponse.prototype_id) == order.prototype_id,
                        sa.or_(col(AIResponse.step).in_(_FILE_STEPS), col(AIResponse.step).like(f"{FIX.name}-%")),
                    )
                )
            ).all()
        files: dict[str, str] = {}
        for _, text in sorted(
            ((step, text) for step, text in answers if step), key=lambda found: _answer_order(found[0])
        ):
            files |= code_files(text)
        return RevisionBase(idea=prototype.idea, plan=plan or "", files=files, revision=0)

    @activity.defn
    async def record_revision_milestone(self, milestone: RevisionMilestone) -> None:
        """Absolute values, so writing a milestone twice is harmless."""
        values: dict[str, Any] = milestone.model_dump(exclude={"revision_id", "files", "preview"}) | {
            "updated_at": utcnow(),
            "preview": preview_column(milestone.preview),
        }
        if milestone.files is not None:
            values["files"] = milestone.files
        if milestone.status == PrototypeStatus.COMPLETED:
            values["completed_at"] = utcnow()
        async with open_session(self.engine) as db:
            result = await db.exec(
                sa.update(PrototypeRevision).where(col(PrototypeRevision.id) == milestone.revision_id).values(**values)
            )
            await db.commit()
        if result.rowcount == 0:
            raise ApplicationError(f"revision {milestone.revision_id} is not in the database", type="RevisionNotFound")
