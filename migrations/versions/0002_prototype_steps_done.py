"""prototypes.steps_done: the steps the workflow reported done, so the stored view needs no reconstruction

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 03:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("prototypes") as batch:
        batch.add_column(sa.Column("steps_done", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prototypes") as batch:
        batch.drop_column("steps_done")
