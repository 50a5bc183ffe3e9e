"""Baseline: the schema of release 0.1.0, the last before migrations.

Revision ID: 0001
Revises:
Create Date: 2026-12-03

A new database gets every table. A database written by a release before migrations existed
(no `alembic_version` table) has these tables already, less the nullable columns added since it
was made (those releases added them with ALTER TABLE at start-up): it is adopted in place — the
missing tables, columns and indexes are added and every record is kept.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _tables() -> list[tuple[str, list[sa.Column], list[str]]]:
    """(table, columns, indexed columns) as release 0.1.0 declared them."""
    text, utc = sa.Text(), sa.DateTime(timezone=True)
    return [
        ("defects", [
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False, primary_key=True),
            sa.Column("created_at", utc, nullable=False),
            sa.Column("camera_id", sa.String(64), nullable=True),
            sa.Column("model", sa.String(128), nullable=False),
            sa.Column("model_version", sa.String(64), nullable=False),
            sa.Column("score", sa.Float(), nullable=False),
            sa.Column("normalized_score", sa.Float(), nullable=False),
            sa.Column("threshold", sa.Float(), nullable=False),
            sa.Column("regions_json", text, nullable=False),
            sa.Column("width", sa.Integer(), nullable=False),
            sa.Column("height", sa.Integer(), nullable=False),
            sa.Column("image_file", sa.String(128), nullable=True),
            sa.Column("overlay_file", sa.String(128), nullable=True),
            sa.Column("acknowledged", sa.Boolean(), nullable=False),
            sa.Column("label", sa.String(64), nullable=True),
            sa.Column("note", sa.String(500), nullable=True),
            sa.Column("acknowledged_by", sa.String(64), nullable=True),
            sa.Column("acknowledged_at", utc, nullable=True),
            sa.Column("roll_id", sa.String(64), nullable=True),
            sa.Column("across_mm", sa.Float(), nullable=True),
            sa.Column("along_m", sa.Float(), nullable=True),
            sa.Column("alignment_json", text, nullable=True),
        ], ["acknowledged", "camera_id", "created_at", "model", "roll_id"]),
        ("line_scores", [
            sa.Column("model", sa.String(128), nullable=False, primary_key=True),
            sa.Column("model_version", sa.String(64), nullable=False),
            sa.Column("scores_json", text, nullable=False),
            sa.Column("collected_at", utc, nullable=False),
        ], []),
        ("roll_defects", [
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False, primary_key=True),
            sa.Column("roll_id", sa.String(64), nullable=False),
            sa.Column("created_at", utc, nullable=False),
            sa.Column("across_min", sa.Float(), nullable=False),
            sa.Column("across_max", sa.Float(), nullable=False),
            sa.Column("along_min", sa.Float(), nullable=False),
            sa.Column("along_max", sa.Float(), nullable=False),
            sa.Column("outline_json", text, nullable=False),
            sa.Column("sightings_json", text, nullable=False),
            sa.Column("cameras_json", text, nullable=False),
            sa.Column("max_score", sa.Float(), nullable=False),
            sa.Column("label", sa.String(64), nullable=True),
        ], ["along_min", "roll_id"]),
        ("rolls", [
            sa.Column("id", sa.String(64), nullable=False, primary_key=True),
            sa.Column("spec_json", text, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("started_at", sa.Float(), nullable=False),
            sa.Column("ended_at", sa.Float(), nullable=True),
            sa.Column("length_m", sa.Float(), nullable=False),
            sa.Column("encoder_json", text, nullable=False),
            sa.Column("coverage_json", text, nullable=True),
        ], ["status"]),
        ("teach_in_scores", [
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False, primary_key=True),
            sa.Column("model", sa.String(128), nullable=False),
            sa.Column("score", sa.Float(), nullable=False),
        ], ["model"]),
        ("teach_ins", [
            sa.Column("model", sa.String(128), nullable=False, primary_key=True),
            sa.Column("model_version", sa.String(64), nullable=False),
            sa.Column("frames", sa.Integer(), nullable=False),
            sa.Column("target_fpr", sa.Float(), nullable=False),
            sa.Column("camera_id", sa.String(128), nullable=True),
            sa.Column("started_at", sa.Float(), nullable=False),
        ], []),
        ("thresholds", [
            sa.Column("model", sa.String(128), nullable=False, primary_key=True),
            sa.Column("model_version", sa.String(64), nullable=False),
            sa.Column("value", sa.Float(), nullable=False),
            sa.Column("method", sa.String(32), nullable=False),
            sa.Column("target_fpr", sa.Float(), nullable=True),
            sa.Column("calibration_count", sa.Integer(), nullable=False),
            sa.Column("set_at", utc, nullable=False),
        ], []),
    ]


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for name, columns, indexed in _tables():
        if name not in existing:
            op.create_table(name, *columns)
            present, indexes = set(), set()
        else:
            present = {c["name"] for c in inspector.get_columns(name)}
            indexes = {i["name"] for i in inspector.get_indexes(name)}
        missing = [c for c in columns if c.name not in present and name in existing]
        for column in missing:
            if not column.nullable:
                raise RuntimeError(f"table {name} lacks the required column {column.name}: not a fabricad database")
        with op.batch_alter_table(name) as batch:
            for column in missing:
                batch.add_column(column)
            for column in indexed:
                if f"ix_{name}_{column}" not in indexes:
                    batch.create_index(f"ix_{name}_{column}", [column], unique=False)


def downgrade() -> None:
    for name, _, _ in reversed(_tables()):
        op.drop_table(name)
