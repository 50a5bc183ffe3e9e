"""Defect types on the roll's defects, and the service's training jobs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("roll_defects") as batch:  # batch: SQLite alters by copying the table
        batch.add_column(sa.Column("defect_type", sa.String(64), nullable=True))
        batch.add_column(sa.Column("type_confidence", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("roll_defects") as batch:
        batch.drop_column("type_confidence")
        batch.drop_column("defect_type")
