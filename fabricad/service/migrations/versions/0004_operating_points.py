"""Operating points set on the line (region size rules, zone thresholds) and zone scores of a
teach-in in progress.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operating_points",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("rules_json", sa.Text(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("teach_ins") as batch:  # batch: SQLite alters by copying the table
        batch.add_column(sa.Column("zones", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("teach_in_scores") as batch:
        batch.add_column(sa.Column("zone_scores_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("teach_in_scores") as batch:
        batch.drop_column("zone_scores_json")
    with op.batch_alter_table("teach_ins") as batch:
        batch.drop_column("zones")
    op.drop_table("operating_points")
