"""Rolls: which cameras cover which roll, where each frame lies along it, one record per physical
defect (sightings merged by position), the grade and the per-roll report.

Stored beside the defect log (same database), so a restarted service carries on with a running
roll. Position along the roll, by preference: the frame's own position (given with the frame),
the encoder feed (last reading, extrapolated with the encoder's own speed), or the line speed ×
time since the roll started.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import DateTime, Float, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from fabricad.errors import FabricadError
from fabricad.rolls.coverage import RollCoverage, Stretch, uninspected
from fabricad.rolls.geometry import CameraPlacement, RollBox, merge_into, region_on_roll
from fabricad.rolls.grading import GradedDefect, GradingRules, RollGrade, grade_roll
from fabricad.service.defect_log import Base, DefectLog

RollStatus = Literal["running", "ended"]


class RollSpec(BaseModel):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="the mill's roll number")
    article: str = Field(min_length=1, max_length=128, description="article / fabric name")
    model: str | None = Field(None, max_length=128, description="model for this article; the cameras' own when omitted")
    width_mm: float = Field(gt=0, le=20_000, description="usable width")
    speed_m_per_min: float | None = Field(None, gt=0, le=1000, description="line speed, when no encoder feed")
    cameras: list[CameraPlacement] = Field(min_length=1, max_length=32)
    rules: GradingRules = GradingRules()
    merge_gap_mm: float = Field(10.0, ge=0, le=1000, description="sightings closer than this are one defect")
    coverage_tolerance_mm: float = Field(10.0, ge=0, le=1000, description="gaps between a camera's frames (or "
                                         "between camera lanes) narrower than this are jitter, not uninspected fabric")


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
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

    @property
    def box(self) -> RollBox:
        return RollBox((self.across_min, self.across_max), (self.along_min, self.along_max),
                       [tuple(p) for p in json.loads(self.outline_json)])

    def graded(self) -> GradedDefect:
        return GradedDefect(self.id, (self.across_min, self.across_max), (self.along_min, self.along_max), self.label)

    def as_dict(self, points: int | None = None) -> dict:
        return {
            "id": self.id, "roll_id": self.roll_id, "created_at": self.created_at.isoformat(),
            "across_mm": [self.across_min, self.across_max], "along_m": [self.along_min, self.along_max],
            "width_mm": round(self.across_max - self.across_min, 2),
            "length_mm": round((self.along_max - self.along_min) * 1000, 2),
            "outline": json.loads(self.outline_json), "sightings": json.loads(self.sightings_json),
            "cameras": json.loads(self.cameras_json), "max_score": self.max_score, "label": self.label,
            "points": points,
        }


def _simplify(outline: list, limit: int = 256) -> list:
    step = max(1, len(outline) // limit)
    return [[round(a, 2), round(b, 5)] for a, b in outline[::step]]


class RollTracker:
    SAVE_EVERY_S = 5.0
    """A running roll's coverage is written this often while frames arrive, so a restarted service
    carries on with all but the last seconds of it; a gap opening or closing is written sooner,
    after SAVE_CHANGE_S (not per frame: a camera too slow for the line opens a gap every frame)."""
    SAVE_CHANGE_S = 1.0

    def __init__(self, defects: DefectLog):
        self.engine = defects.engine
        self.defects = defects
        Base.metadata.create_all(self.engine)
        defects.add_new_columns()
        self._lock = threading.Lock()
        self._by_camera: dict[str, tuple[RollRecord, CameraPlacement]] | None = None  # running rolls, cached
        self._coverage: dict[str, RollCoverage] = {}  # per running roll: what its cameras saw
        self._saved_at: dict[str, float] = {}

    # --- life cycle --------------------------------------------------------------------------
    @contextmanager
    def _changing_rolls(self):
        """A transaction that starts or ends a roll (the caller holds the lock). The camera cache
        is cleared after the commit: cleared before it, a frame's lookup could rebuild it from
        the database as it was and keep it, and that camera's frames would miss their roll."""
        with Session(self.engine) as session:
            with session.begin():
                yield session
        self._by_camera = None

    def start(self, spec: RollSpec, at: float | None = None) -> RollRecord:
        with self._lock, self._changing_rolls() as session:
            if session.get(RollRecord, spec.id) is not None:
                raise FabricadError(f"roll {spec.id!r} exists already")
            busy = {c.camera_id: r.id for r in self._running(session) for c in r.spec.cameras}
            taken = [c.camera_id for c in spec.cameras if c.camera_id in busy]
            if taken:
                raise FabricadError(f"camera(s) {', '.join(taken)} already inspect roll {busy[taken[0]]}; end it first")
            row = RollRecord(id=spec.id, spec_json=spec.model_dump_json(), status="running",
                             started_at=time.time() if at is None else at, length_m=0.0, encoder_json="[]")
            session.add(row)
            session.flush()
            session.expunge(row)
            return row

    def end(self, roll_id: str, length_m: float | None = None) -> RollRecord:
        with self._lock, self._changing_rolls() as session:
            row = self._get(session, roll_id)
            if row.status == "ended":
                raise FabricadError(f"roll {roll_id!r} has ended already")
            now = time.time()
            seen = max(row.length_m, self._seen(session, roll_id).furthest_m)
            self._save(row)
            self._coverage.pop(roll_id, None)
            self._saved_at.pop(roll_id, None)
            # The inspected length when frames were seen (the cameras' own record); else where the
            # encoder or line speed says the roll has got to.
            row.length_m = length_m if length_m is not None else (seen if seen > 0 else self._position(row, now) or 0.0)
            row.status, row.ended_at = "ended", now
            session.flush()
            session.expunge(row)
            return row

    def record_position(self, roll_id: str, along_m: float, at: float | None = None) -> RollRecord:
        """An encoder reading: the roll has advanced to `along_m` at time `at`."""
        with self._lock, Session(self.engine) as session, session.begin():
            row = self._get(session, roll_id)
            if row.status != "running":
                raise FabricadError(f"roll {roll_id!r} has ended")
            readings = json.loads(row.encoder_json)[-1:] + [[time.time() if at is None else at, along_m]]
            row.encoder_json = json.dumps(readings)
            row.length_m = max(row.length_m, along_m)
            session.flush()
            session.expunge(row)
            return row

    # --- queries -----------------------------------------------------------------------------
    @staticmethod
    def _running(session: Session) -> list[RollRecord]:
        return list(session.scalars(select(RollRecord).where(RollRecord.status == "running")))

    @staticmethod
    def _get(session: Session, roll_id: str) -> RollRecord:
        row = session.get(RollRecord, roll_id)
        if row is None:
            raise KeyError(roll_id)
        return row

    def get(self, roll_id: str) -> RollRecord:
        with Session(self.engine) as session:
            row = self._get(session, roll_id)
            session.expunge(row)
            return row

    def list(self, status: RollStatus | None = None, limit: int = 100) -> list[RollRecord]:
        query = select(RollRecord).order_by(RollRecord.started_at.desc()).limit(limit)
        if status is not None:
            query = query.where(RollRecord.status == status)
        with Session(self.engine) as session:
            rows = list(session.scalars(query))
            session.expunge_all()
            return rows

    def roll_defects(self, roll_id: str) -> list[RollDefectRecord]:
        with Session(self.engine) as session:
            rows = list(session.scalars(select(RollDefectRecord).where(RollDefectRecord.roll_id == roll_id)
                                        .order_by(RollDefectRecord.along_min)))
            session.expunge_all()
            return rows

    def roll_for_camera(self, camera_id: str | None) -> tuple[RollRecord, CameraPlacement] | None:
        """The running roll this camera looks at, if any (asked for every frame: cached)."""
        if camera_id is None:
            return None
        cache = self._by_camera
        if cache is None:
            with self._lock:  # not while a roll starts or ends: the cache would miss it
                cache = self._by_camera
                if cache is None:
                    cache = {}
                    with Session(self.engine) as session:
                        for row in self._running(session):
                            session.expunge(row)
                            for placement in row.spec.cameras:
                                cache[placement.camera_id] = (row, placement)
                    self._by_camera = cache
        return cache.get(camera_id)

    # --- coverage ----------------------------------------------------------------------------
    def _seen(self, session: Session, roll_id: str) -> RollCoverage | None:
        """A running roll's coverage in memory, read from the database the first time (after a
        restart); None once the roll has ended (a frame still in flight then adds nothing)."""
        if roll_id not in self._coverage:
            stored = session.get(RollRecord, roll_id)
            if stored is None or stored.status != "running":
                return None
            self._coverage[roll_id] = stored.coverage
        return self._coverage[roll_id]

    def _save(self, stored: RollRecord) -> None:
        seen = self._coverage.get(stored.id)
        if seen is not None:
            stored.coverage_json = seen.to_json()
            stored.length_m = max(stored.length_m, seen.furthest_m)
            self._saved_at[stored.id] = time.time()

    def frame_seen(self, row: RollRecord, camera_id: str, along_m: tuple[float, float], across_mm: tuple[float, float]) -> None:
        """A frame with fabric in view covered `along_m` of the roll and `across_mm` of its width.
        It extends the inspected length and the camera's coverage; written to the database when
        a gap opens or closes (at most every SAVE_CHANGE_S) and every SAVE_EVERY_S."""
        with self._lock, Session(self.engine) as session, session.begin():
            seen = self._seen(session, row.id)
            if seen is None:
                return
            changed = seen.see(camera_id, along_m, across_mm, row.spec.coverage_tolerance_mm / 1000)
            if time.time() - self._saved_at.get(row.id, 0.0) >= (self.SAVE_CHANGE_S if changed else self.SAVE_EVERY_S):
                self._save(self._get(session, row.id))

    def _snapshot(self, row: RollRecord) -> RollCoverage:
        """The roll's coverage as it stands: a running roll's from memory (a copy: frames keep
        arriving), else as saved."""
        if row.status == "running":
            with self._lock:
                seen = self._coverage.get(row.id)
                if seen is not None:
                    return seen.copy()
        return row.coverage

    def coverage(self, row: RollRecord, seen: RollCoverage | None = None) -> tuple[list[Stretch], list[tuple[float, float]]]:
        """Stretches some camera of the roll did not see (up to the roll's length once it has
        ended; while it runs, up to the furthest frame seen: the cameras have not got further),
        and bands of the width in no camera's lane. `seen`: the `_snapshot` already taken."""
        spec = row.spec
        seen = self._snapshot(row) if seen is None else seen
        length = row.length_m if row.status == "ended" else seen.furthest_m
        tolerance = spec.coverage_tolerance_mm
        return (uninspected(seen.spans, [c.camera_id for c in spec.cameras], length, tolerance / 1000),
                seen.uncovered_width(spec.width_mm, tolerance))

    @staticmethod
    def _position(row: RollRecord, at: float) -> float | None:
        readings = json.loads(row.encoder_json)
        if readings:
            t1, p1 = readings[-1]
            if len(readings) == 2 and readings[1][0] > readings[0][0]:
                speed = (p1 - readings[0][1]) / (t1 - readings[0][0])
            else:
                speed = (row.spec.speed_m_per_min or 0.0) / 60
            return p1 + speed * (at - t1)
        if row.spec.speed_m_per_min is None:
            return None
        return row.spec.speed_m_per_min / 60 * (at - row.started_at)

    def frame_position(self, row: RollRecord, captured_at: float) -> float:
        position = self._position(row, captured_at)
        if position is None:
            raise FabricadError(f"roll {row.id}: no position (no encoder reading, no line speed, none with the frame)")
        return position

    # --- defects -----------------------------------------------------------------------------
    def observe(self, row: RollRecord, placement: CameraPlacement, frame_along_m: float, frame_height_px: int,
                regions: list[dict], defect_id: int | None) -> list[int]:
        """A frame of this roll was inspected: extend the roll's length; place and merge its regions.
        Returns the roll-defect ids the regions became part of."""
        spec = row.spec
        frame_end = frame_along_m + frame_height_px * placement.mm_per_px / 1000
        touched: list[int] = []
        with self._lock, Session(self.engine) as session, session.begin():
            stored = self._get(session, row.id)
            stored.length_m = max(stored.length_m, frame_end)
            self._save(stored)
            for region in regions:
                box = region_on_roll(region, frame_along_m, placement)
                reach = box.along_m[0] - spec.merge_gap_mm / 1000
                nearby = {d.id: d for d in session.scalars(select(RollDefectRecord).where(
                    RollDefectRecord.roll_id == row.id, RollDefectRecord.along_max >= reach))}
                keep, fold = merge_into({k: d.box for k, d in nearby.items()}, box, spec.merge_gap_mm)
                if keep is None:
                    record = RollDefectRecord(roll_id=row.id, created_at=datetime.now(UTC), across_min=box.across_mm[0],
                                              across_max=box.across_mm[1], along_min=box.along_m[0], along_max=box.along_m[1],
                                              outline_json="[]", sightings_json="[]", cameras_json="[]",
                                              max_score=region["max_score"])
                    session.add(record)
                    parts = [box]
                else:
                    record = nearby[keep]
                    parts = [record.box, box] + [nearby[k].box for k in fold]
                sightings = set(json.loads(record.sightings_json)) | ({defect_id} if defect_id else set())
                cameras = set(json.loads(record.cameras_json)) | {placement.camera_id}
                score = max(record.max_score, region["max_score"])
                labels = [record.label]
                for k in fold:  # a new sighting that bridges two known defects joins them
                    sightings |= set(json.loads(nearby[k].sightings_json))
                    cameras |= set(json.loads(nearby[k].cameras_json))
                    score = max(score, nearby[k].max_score)
                    labels.append(nearby[k].label)
                    session.delete(nearby[k])
                merged = parts[0]
                for part in parts[1:]:
                    merged = merged.union(part)
                record.across_min, record.across_max = merged.across_mm
                record.along_min, record.along_max = merged.along_m
                record.outline_json = json.dumps(_simplify(merged.outline))
                record.sightings_json = json.dumps(sorted(sightings))
                record.cameras_json = json.dumps(sorted(cameras))
                record.max_score = score
                record.label = next((label for label in labels if label), None)
                session.flush()
                touched.append(record.id)
        return touched

    def label_sighting(self, defect_id: int, label: str) -> None:
        """An operator labelled a frame-level defect: its roll defects take the label (grade follows)."""
        with self._lock, Session(self.engine) as session, session.begin():
            for record in session.scalars(select(RollDefectRecord).where(RollDefectRecord.sightings_json.contains(str(defect_id)))):
                if defect_id in json.loads(record.sightings_json):
                    record.label = label

    def label(self, roll_defect_id: int, label: str) -> RollDefectRecord:
        with self._lock, Session(self.engine) as session, session.begin():
            record = session.get(RollDefectRecord, roll_defect_id)
            if record is None:
                raise KeyError(roll_defect_id)
            record.label = label
            session.flush()
            session.expunge(record)
            return record

    def grade(self, roll_id: str) -> tuple[RollRecord, list[RollDefectRecord], RollGrade, tuple[list, list]]:
        """The roll, its defects, its grade, and what its cameras did not see (`coverage`)."""
        row = self.get(roll_id)
        defects = self.roll_defects(roll_id)
        seen = self._snapshot(row)
        if row.status == "running":
            row.length_m = max(row.length_m, seen.furthest_m)
        missed, bands = self.coverage(row, seen)
        grade = grade_roll([d.graded() for d in defects], row.spec.width_mm, row.length_m, row.spec.rules,
                           uninspected_m=sum(s.length_m for s in missed), uncovered_mm=sum(b - a for a, b in bands))
        return row, defects, grade, (missed, bands)

    def summary(self, row: RollRecord, grade: RollGrade | None = None, defects: int | None = None,
                unseen: tuple[list[Stretch], list[tuple[float, float]]] | None = None) -> dict:
        spec = row.spec
        return {
            "id": row.id, "article": spec.article, "model": spec.model, "status": row.status,
            "width_mm": spec.width_mm, "speed_m_per_min": spec.speed_m_per_min, "length_m": round(row.length_m, 4),
            "started_at": datetime.fromtimestamp(row.started_at, UTC).isoformat(),
            "ended_at": datetime.fromtimestamp(row.ended_at, UTC).isoformat() if row.ended_at else None,
            "cameras": [c.model_dump() for c in spec.cameras], "rules": spec.rules.model_dump(),
            "defects": defects, "grade": grade.as_dict() if grade else None,
            "uninspected": [s.as_dict() for s in unseen[0]] if unseen else [],
            "uncovered_across_mm": [[round(a, 1), round(b, 1)] for a, b in unseen[1]] if unseen else [],
        }
