"""The rolls on the line: which cameras look at which running roll, where each frame lies along
it, and what its defects and grade are.

Stored beside the defect log (same database), so a restarted service carries on with a running
roll. The pieces: `position_at` (where the roll has got to), `CoverageBook` (what the cameras
saw), `place_regions` (many sightings, one defect), `grade_roll` (the 4-point grade); this class
holds them together under one lock and keeps the camera → roll lookup that every frame asks.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from fabricad.errors import FabricadError
from fabricad.rolls.coverage import RollCoverage, Stretch, uninspected
from fabricad.rolls.geometry import CameraPlacement
from fabricad.rolls.grading import RollGrade, grade_roll
from fabricad.rolls.position import position_at
from fabricad.service.database import Database
from fabricad.service.records import RollDefectRecord, RollRecord
from fabricad.service.rolls.coverage_book import CoverageBook
from fabricad.service.rolls.sightings import label_sightings, place_regions
from fabricad.service.schemas import RollSpec

RollStatus = Literal["running", "ended"]


def _position(row: RollRecord, at: float) -> float | None:
    return position_at(at, json.loads(row.encoder_json), row.spec.speed_m_per_min, row.started_at)


class RollTracker:
    def __init__(self, database: Database):
        self.database = database
        self._lock = threading.Lock()
        self._by_camera: dict[str, tuple[RollRecord, CameraPlacement]] | None = None  # running rolls, cached
        self.coverage_book = CoverageBook()
        # (roll, camera) → (acquisition, odometer at the roll's 0, the last place given)
        self._odometers: dict[tuple[str, str], tuple[int, float, float]] = {}

    # --- life cycle --------------------------------------------------------------------------
    @contextmanager
    def _changing_rolls(self):
        """A transaction that starts or ends a roll (the caller holds the lock). The camera cache
        is cleared after the commit: cleared before it, a frame's lookup could rebuild it from
        the database as it was and keep it, and that camera's frames would miss their roll."""
        with self.database.session(write=True) as session:
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
            seen = self.coverage_book.seen(session, roll_id)
            furthest = max(row.length_m, seen.furthest_m)
            self.coverage_book.save(row)
            self.coverage_book.forget(roll_id)
            for key in [k for k in list(self._odometers) if k[0] == roll_id]:  # a copy: frames add keys meanwhile
                self._odometers.pop(key, None)
            # The inspected length when frames were seen (the cameras' own record); else where the
            # encoder or line speed says the roll has got to.
            row.length_m = length_m if length_m is not None else (furthest if furthest > 0 else _position(row, now) or 0.0)
            row.status, row.ended_at = "ended", now
            session.flush()
            session.expunge(row)
            return row

    def record_position(self, roll_id: str, along_m: float, at: float | None = None) -> RollRecord:
        """An encoder reading: the roll has advanced to `along_m` at time `at`. The cameras' cache
        is renewed too, or frames would go on being placed by the readings it holds."""
        with self._lock, self._changing_rolls() as session:
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
        with self.database.session() as session:
            row = self._get(session, roll_id)
            session.expunge(row)
            return row

    def list(self, status: RollStatus | None = None, limit: int = 100) -> list[RollRecord]:
        query = select(RollRecord).order_by(RollRecord.started_at.desc()).limit(limit)
        if status is not None:
            query = query.where(RollRecord.status == status)
        with self.database.session() as session:
            rows = list(session.scalars(query))
            session.expunge_all()
            return rows

    def roll_defects(self, roll_id: str) -> list[RollDefectRecord]:
        with self.database.session() as session:
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
                    with self.database.session() as session:
                        for row in self._running(session):
                            session.expunge(row)
                            for placement in row.spec.cameras:
                                cache[placement.camera_id] = (row, placement)
                    self._by_camera = cache
        return cache.get(camera_id)

    # --- frames ------------------------------------------------------------------------------
    def frame_position(self, row: RollRecord, captured_at: float) -> float:
        position = _position(row, captured_at)
        if position is None:
            raise FabricadError(f"roll {row.id}: no position (no encoder reading, no line speed, none with the frame)")
        return position

    def odometer_position(self, row: RollRecord, camera_id: str, odometer_m: float, acquisition: int,
                          captured_at: float) -> float:
        """A line-scan frame's place on the roll from its camera's own line count: exact from
        frame to frame. The count's zero is tied to the roll at the camera's first frame of the
        roll, and again after the camera reconnects (its count starts over): where the encoder
        or the line speed says the roll is then, else at 0 / where the last frame was (the
        fabric that passed during an outage is then not counted)."""
        key = (row.id, camera_id)
        known = self._odometers.get(key)
        if known is None or known[0] != acquisition:
            there = _position(row, captured_at)
            if there is None:
                there = known[2] if known is not None else 0.0
            known = (acquisition, odometer_m - there, there)
        along = odometer_m - known[1]
        self._odometers[key] = (known[0], known[1], along)
        return along

    def frame_seen(self, row: RollRecord, camera_id: str, along_m: tuple[float, float], across_mm: tuple[float, float]) -> None:
        """A frame with fabric in view covered `along_m` of the roll and `across_mm` of its width.
        It extends the inspected length and the camera's coverage; written to the database when
        a gap opens or closes and now and then (`CoverageBook`)."""
        with self._lock, self.database.session(write=True) as session:
            seen = self.coverage_book.seen(session, row.id)
            if seen is None:
                return
            changed = seen.see(camera_id, along_m, across_mm, row.spec.coverage_tolerance_mm / 1000)
            if self.coverage_book.due(row.id, changed):
                self.coverage_book.save(self._get(session, row.id))

    def observe(self, row: RollRecord, placement: CameraPlacement, frame_along_m: float, frame_height_px: int,
                regions: list[dict], defect_id: int | None) -> list[int]:
        """A defective frame of this roll was inspected: extend the roll's length; place and merge
        its regions. Returns the roll-defect ids the regions became part of."""
        frame_end = frame_along_m + frame_height_px * placement.mm_per_px / 1000
        with self._lock, self.database.session(write=True) as session:
            stored = self._get(session, row.id)
            stored.length_m = max(stored.length_m, frame_end)
            self.coverage_book.save(stored)
            return place_regions(session, row.id, row.spec, placement, frame_along_m, regions, defect_id)

    # --- labels ------------------------------------------------------------------------------
    def label_sighting(self, defect_id: int, label: str) -> None:
        """An operator labelled a frame-level defect: its roll defects take the label (grade follows)."""
        with self._lock, self.database.session(write=True) as session:
            label_sightings(session, defect_id, label)

    def label(self, roll_defect_id: int, label: str) -> RollDefectRecord:
        with self._lock, self.database.session(write=True) as session:
            record = session.get(RollDefectRecord, roll_defect_id)
            if record is None:
                raise KeyError(roll_defect_id)
            record.label = label
            session.flush()
            session.expunge(record)
            return record

    # --- grade -------------------------------------------------------------------------------
    def _snapshot(self, row: RollRecord) -> RollCoverage:
        """The roll's coverage as it stands: a running roll's from memory, else as saved."""
        if row.status == "running":
            with self._lock:
                seen = self.coverage_book.snapshot(row.id)
            if seen is not None:
                return seen
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

    @staticmethod
    def summary(row: RollRecord, grade: RollGrade | None = None, defects: int | None = None,
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
