"""users.email_verified_at: when the account's address was verified; nothing is linked by an unverified address

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing accounts start unverified: registration never checked their addresses, so an address that
    # someone else registered must not start linking that person's messages now. Each can verify (resend).
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email_verified_at", models.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email_verified_at")
