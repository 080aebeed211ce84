"""prototypes.verified, fix_rounds, verification: whether the generated code passed its sandbox checks

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("prototypes") as batch:
        batch.add_column(sa.Column("verified", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("fix_rounds", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("verification", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prototypes") as batch:
        batch.drop_column("verification")
        batch.drop_column("fix_rounds")
        batch.drop_column("verified")
