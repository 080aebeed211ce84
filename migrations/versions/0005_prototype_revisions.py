"""prototype_revisions: a completed prototype revised from its customer's feedback

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUS = sa.Enum(
    "QUEUED", "RUNNING", "AWAITING_APPROVAL", "COMPLETED", "FAILED", "CANCELLED",
    name="prototypestatus", native_enum=False, length=32,
)  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "prototype_revisions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("prototype_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("feedback", sa.Text(), nullable=False),
        sa.Column("status", _STATUS, nullable=False),
        sa.Column("current_step", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("cost_usd_micros", sa.BigInteger(), nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=True),
        sa.Column("verified", sa.Boolean(), nullable=True),
        sa.Column("fix_rounds", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("files", sa.JSON(), nullable=True),
        sa.Column("created_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", models.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["prototype_id"], ["prototypes.id"], name="fk_prototype_revisions_prototype_id_prototypes",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_prototype_revisions_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["file_id"], ["files.id"], name="fk_prototype_revisions_file_id_files", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_prototype_revisions"),
        sa.UniqueConstraint("prototype_id", "number", name="uq_prototype_revisions_number"),
    )  # fmt: skip
    op.create_index("ix_prototype_revisions_prototype_id", "prototype_revisions", ["prototype_id"])
    op.create_index("ix_prototype_revisions_user_id", "prototype_revisions", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_prototype_revisions_user_id", table_name="prototype_revisions")
    op.drop_index("ix_prototype_revisions_prototype_id", table_name="prototype_revisions")
    op.drop_table("prototype_revisions")
