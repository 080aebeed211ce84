"""prototypes and prototype_revisions: the picture of the running app (its PNG file) and why there is none

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("prototypes", "prototype_revisions")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("preview", sa.JSON(), nullable=True))
            batch.add_column(sa.Column("preview_unavailable", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("preview_unavailable")
            batch.drop_column("preview")
