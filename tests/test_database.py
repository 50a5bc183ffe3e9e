"""The database layer: migrations build exactly the schema `records.py` declares (on SQLite and,
with `--database postgresql`, on a real PostgreSQL), and a database file from the last release
before migrations (0.1.0) opens with every record kept."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from fabricad.service.database import Base, Database, alembic_config, head_revision
from fabricad.service.defect_log import DefectLog
from fabricad.service.rolls import RollTracker
from fabricad.service.thresholds import ThresholdStore
from tests.databases import COLUMNS_SINCE_0_1_0, SERVER_URL, database_url

RELEASE_0_1_0 = Path(__file__).parent / "fixtures" / "fabricad-0.1.0.sql"
"""`sqlite3 .dump` of a database written by release 0.1.0 (create_all, no alembic_version):
two defects (one on a roll, one acknowledged as a false alarm), an ended roll with its defect
and coverage, a threshold set on the line and a teach-in's scores."""

TABLES_OF_0_1_0 = ("defects", "line_scores", "roll_defects", "rolls", "teach_in_scores", "teach_ins", "thresholds")


def schema_differences(database: Database) -> list:
    with database.engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)


def test_migrations_build_the_schema_the_records_declare(tmp_path):
    database = Database(database_url(tmp_path))
    assert database.engine.dialect.name == ("postgresql" if os.environ.get(SERVER_URL) else "sqlite")
    assert database.revision() == head_revision()
    assert schema_differences(database) == []
    Database(database_url(tmp_path))  # a second start has nothing to do
    assert database.revision() == head_revision()


def test_migrations_go_down_and_up_again(tmp_path):
    database = Database(database_url(tmp_path))
    command.downgrade(alembic_config(database.engine), "base")
    assert database.revision() is None
    assert set(inspect(database.engine).get_table_names()) <= {"alembic_version"}
    database.upgrade()
    assert schema_differences(database) == []


def test_the_checks_above_can_fail(tmp_path):
    """A column the records declare but no migration made is reported."""
    database = Database(database_url(tmp_path))
    with database.engine.begin() as connection:
        connection.execute(text("ALTER TABLE rolls DROP COLUMN coverage_json"))
    assert [d[0] for d in schema_differences(database)] == ["add_column"]


def test_a_database_made_before_migrations_is_adopted_with_its_records(tmp_path):
    """What release 0.1.0 did at start-up (create_all), on this session's database kind, less a
    column it did not have yet: the baseline adds what is missing and keeps the row."""
    database = Database(database_url(tmp_path), upgrade=False)
    Base.metadata.create_all(database.engine, tables=[Base.metadata.tables[name] for name in TABLES_OF_0_1_0])
    with database.engine.begin() as connection:
        connection.execute(text("ALTER TABLE defects DROP COLUMN alignment_json"))
        for table, column in COLUMNS_SINCE_0_1_0:  # added by later migrations, not by 0.1.0
            connection.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        connection.execute(text("INSERT INTO thresholds VALUES ('plain', 'v1', 1.5, 'manual', NULL, 0, CURRENT_TIMESTAMP)"))
    database.upgrade()
    assert database.revision() == head_revision() and schema_differences(database) == []
    assert ThresholdStore(database).stored("plain", "v1").value == 1.5


def test_a_database_file_from_release_0_1_0_opens_with_every_record(tmp_path):
    path = tmp_path / "fabricad.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(RELEASE_0_1_0.read_text())
    database = Database(f"sqlite:///{path}")
    assert database.revision() == head_revision() and schema_differences(database) == []

    defects, total = DefectLog(database, tmp_path / "images").list()
    assert total == 2
    on_roll, acknowledged = sorted(defects, key=lambda d: d.id)
    assert (on_roll.roll_id, on_roll.across_mm, on_roll.camera_id) == ("R-0.1.0", 12.5, "loom1")
    assert (acknowledged.label, acknowledged.note, acknowledged.acknowledged) == ("false_alarm", "thread on the lens", True)

    rolls = RollTracker(database)
    row, roll_defects, grade, (missed, _) = rolls.grade("R-0.1.0")
    assert (row.status, row.length_m, row.spec.article) == ("ended", 0.5, "plain twill")
    assert [d.sightings_json for d in roll_defects] == ["[1]"]
    assert [s.along_m for s in missed] == [(0.064, 0.5)]  # its coverage survived: the camera saw 64 mm of 0.5 m
    assert grade.defect_points  # the defect still carries its points

    thresholds = ThresholdStore(database)
    assert thresholds.stored("plain", "abc123").value == 1.25
    assert thresholds.line_scores("plain", "abc123") == [0.5, 0.6, 0.7]


@pytest.mark.parametrize("url", ["sqlite:///no/such/folder/x.db", "nosuchdb://x"])
def test_a_database_that_cannot_be_opened_says_which(url):
    from fabricad.errors import FabricadError

    with pytest.raises(FabricadError, match="database") as caught:
        Database(url)
    assert url.split("/")[-1] in str(caught.value)


def test_moments_come_back_in_utc_and_filters_with_an_offset_compare_as_moments(tmp_path):
    """SQLite keeps no zone: without UtcDateTime a defect's time read back naive (a browser took
    it for local time) and `since` given at +03:00 compared its digits, three hours off."""
    from datetime import UTC, datetime, timedelta, timezone

    import numpy as np

    log = DefectLog(Database(database_url(tmp_path)), tmp_path / "images")
    result = {"score": 0.9, "normalized_score": 0.7, "threshold": 0.5, "regions": []}
    defect_id = log.record(model="m", model_version="v", result=result, image=np.zeros((8, 8, 3), np.uint8), overlay=None)
    created = log.get(defect_id).created_at
    assert created.utcoffset() == timedelta(0) and abs(datetime.now(UTC) - created) < timedelta(minutes=1)
    istanbul = timezone(timedelta(hours=3))
    a_minute_ago = (datetime.now(UTC) - timedelta(minutes=1)).astimezone(istanbul)  # later digits, same moment
    assert log.list(since=a_minute_ago)[1] == 1
    assert log.list(until=a_minute_ago)[1] == 0
