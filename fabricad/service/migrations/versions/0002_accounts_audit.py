"""Named user accounts, their sessions, and the audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    utc = sa.DateTime(timezone=True)
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), nullable=False, primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), nullable=False, primary_key=True),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("expires_at", utc, nullable=False),
    )
    op.create_index("ix_sessions_user", "sessions", ["user"])
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False, primary_key=True),
        sa.Column("at", utc, nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("actor_kind", sa.String(8), nullable=False),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("action", sa.String(48), nullable=False),
        sa.Column("target", sa.String(160), nullable=True),
        sa.Column("detail_json", sa.Text(), nullable=False),
    )
    for column in ("at", "actor", "action"):
        op.create_index(f"ix_audit_log_{column}", "audit_log", [column])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("sessions")
    op.drop_table("users")
