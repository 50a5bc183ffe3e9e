"""The selvedge band's maximum of each teach-in frame, from which a teach-in sets the band's own
threshold.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("teach_in_scores") as batch:  # batch: SQLite alters by copying the table
        batch.add_column(sa.Column("selvedge_score", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("teach_in_scores") as batch:
        batch.drop_column("selvedge_score")
