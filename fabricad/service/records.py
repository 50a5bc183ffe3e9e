"""Every table of the service's database, in one place: what the migrations
(`migrations/versions/`) build, and what tests/test_database.py checks them against. A change
here needs a migration (`alembic revision --autogenerate`, see docs/development.md)."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Boolean, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fabricad.rolls.coverage import RollCoverage
from fabricad.rolls.geometry import RollBox
from fabricad.rolls.grading import GradedDefect, grading_type
from fabricad.service.database import Base, UtcDateTime
from fabricad.service.schemas import RollSpec

RECORD_ID_MAX = 2**31 - 1
"""The largest id an `Integer` primary key holds on every database (32-bit on PostgreSQL; SQLite's
are 64-bit): the API refuses larger ids in paths with 422 instead of an overflow in the driver."""


# --- the defect log ---------------------------------------------------------------------------
class DefectRecord(Base):
    __tablename__ = "defects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    camera_id: Mapped[str | None] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    model_version: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    normalized_score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    regions_json: Mapped[str] = mapped_column(Text)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    image_file: Mapped[str | None] = mapped_column(String(128))
    overlay_file: Mapped[str | None] = mapped_column(String(128))
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    label: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(500))
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Roll inspection (filled when a roll is running): which roll and where on it.
    roll_id: Mapped[str | None] = mapped_column(String(64), index=True)
    across_mm: Mapped[float | None] = mapped_column(Float)
    along_m: Mapped[float | None] = mapped_column(Float)
    # Added later (texture alignment): how the scan was turned before scoring, JSON; NULL if not.
    alignment_json: Mapped[str | None] = mapped_column(Text)


# --- rolls ----------------------------------------------------------------------------------------
class RollRecord(Base):
    __tablename__ = "rolls"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    length_m: Mapped[float] = mapped_column(Float, default=0.0)
    encoder_json: Mapped[str] = mapped_column(Text, default="[]")
    coverage_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Where each camera saw fabric, along and across the roll (`RollCoverage.to_json`)"""

    @property
    def spec(self) -> RollSpec:
        return RollSpec.model_validate_json(self.spec_json)

    @property
    def coverage(self) -> RollCoverage:
        return RollCoverage.from_json(self.coverage_json)


class RollDefectRecord(Base):
    __tablename__ = "roll_defects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    roll_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    across_min: Mapped[float] = mapped_column(Float)
    across_max: Mapped[float] = mapped_column(Float)
    along_min: Mapped[float] = mapped_column(Float, index=True)
    along_max: Mapped[float] = mapped_column(Float)
    outline_json: Mapped[str] = mapped_column(Text, default="[]")
    sightings_json: Mapped[str] = mapped_column(Text, default="[]")
    """frame-level defect-log ids this defect was seen in"""
    cameras_json: Mapped[str] = mapped_column(Text, default="[]")
    max_score: Mapped[float] = mapped_column(Float)
    label: Mapped[str | None] = mapped_column(String(64))
    """the operator's label: it decides over the predicted type"""
    # Added later (defect types): the type of the strongest region that became part of it.
    defect_type: Mapped[str | None] = mapped_column(String(64))
    type_confidence: Mapped[float | None] = mapped_column(Float)

    @property
    def box(self) -> RollBox:
        return RollBox((self.across_min, self.across_max), (self.along_min, self.along_max),
                       [tuple(p) for p in json.loads(self.outline_json)])

    def graded(self) -> GradedDefect:
        return GradedDefect(self.id, (self.across_min, self.across_max), (self.along_min, self.along_max),
                            self.label or grading_type(self.defect_type))

    def as_dict(self, points: int | None = None) -> dict:
        return {
            "id": self.id, "roll_id": self.roll_id, "created_at": self.created_at.isoformat(),
            "across_mm": [self.across_min, self.across_max], "along_m": [self.along_min, self.along_max],
            "width_mm": round(self.across_max - self.across_min, 2),
            "length_mm": round((self.along_max - self.along_min) * 1000, 2),
            "outline": json.loads(self.outline_json), "sightings": json.loads(self.sightings_json),
            "cameras": json.loads(self.cameras_json), "max_score": self.max_score, "label": self.label,
            "type": self.defect_type, "type_confidence": self.type_confidence, "points": points,
        }


# --- thresholds and teach-ins ---------------------------------------------------------------
class ThresholdRecord(Base):
    __tablename__ = "thresholds"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(32))
    target_fpr: Mapped[float | None] = mapped_column(Float)
    calibration_count: Mapped[int] = mapped_column(Integer, default=0)
    set_at: Mapped[datetime] = mapped_column(UtcDateTime())


class OperatingPointRecord(Base):
    """A model's operating point set on the line (`fabricad.inference.operating_point`): region
    size rules and zone thresholds on top of its threshold, for one bundle version."""

    __tablename__ = "operating_points"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64))
    rules_json: Mapped[str] = mapped_column(Text)
    set_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LineScoresRecord(Base):
    """The scores a teach-in collected on the line's good fabric, kept so the threshold slider can
    preview false alarms against the line rather than against a few held-out training images."""

    __tablename__ = "line_scores"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64))
    scores_json: Mapped[str] = mapped_column(Text)
    collected_at: Mapped[datetime] = mapped_column(UtcDateTime())


class TeachInRecord(Base):
    """A teach-in in progress (`fabricad.service.teach_in`), so a restart part-way does not lose it."""

    __tablename__ = "teach_ins"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64))
    frames: Mapped[int] = mapped_column(Integer)
    target_fpr: Mapped[float] = mapped_column(Float)
    camera_id: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[float] = mapped_column(Float)
    zones: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class TeachInScoreRecord(Base):
    """One score of a teach-in in progress. A row each, so a save writes only the scores that
    came in since the last one: rewriting them all would grow with the teach-in (up to 100 000
    frames) on the inspection path."""

    __tablename__ = "teach_in_scores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    score: Mapped[float] = mapped_column(Float)
    zone_scores_json: Mapped[str | None] = mapped_column(Text)
    """the frame's maximum per zone across the width, when the teach-in teaches zones"""
    selvedge_score: Mapped[float | None] = mapped_column(Float)
    """the frame's selvedge band maximum, where the operating point sets a band and the frame showed it"""


# --- people and what they did ------------------------------------------------------------------
class UserRecord(Base):
    """A named account for the dashboard and the API. Only the password's Argon2id hash is kept."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class SessionRecord(Base):
    """A signed-in user's session. The token is kept as its SHA-256 only: a copy of the database
    (a backup on a share) signs nobody in."""

    __tablename__ = "sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class AuditRecord(Base):
    """One action that changed what the line does or what the record says, and who took it: a user,
    an API key (by fingerprint) or a line controller (by its output's name)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(80), index=True)
    actor_kind: Mapped[str] = mapped_column(String(8))
    role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(48), index=True)
    target: Mapped[str | None] = mapped_column(String(160))
    detail_json: Mapped[str] = mapped_column(Text, default="{}")
