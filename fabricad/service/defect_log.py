"""The defect log: every DEFECT verdict, durable (`database.py`), with its image and overlay on
disk. Image files get names the service generates; nothing from a request ever becomes a path.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import func, select

from fabricad.service.database import Database
from fabricad.service.records import DefectRecord


class DefectLog:
    def __init__(self, database: Database, image_store: Path, retention: int = 10_000):
        self.database = database
        self.image_store = Path(image_store)
        self.image_store.mkdir(parents=True, exist_ok=True)
        self.retention = retention
        self._prune_lock = threading.Lock()

    def _write_png(self, image: np.ndarray) -> str:
        name = f"{uuid.uuid4().hex}.png"
        cv2.imwrite(str(self.image_store / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return name

    def record(self, *, model: str, model_version: str, result: dict, image: np.ndarray, overlay: np.ndarray | None,
               camera_id: str | None = None, roll_id: str | None = None, across_mm: float | None = None,
               along_m: float | None = None) -> int:
        """Store one defect; files first, then the row, so a row never points to a missing file."""
        image_file = self._write_png(image) if self.retention else None
        overlay_file = self._write_png(overlay) if self.retention and overlay is not None else None
        row = DefectRecord(
            created_at=datetime.now(UTC), camera_id=camera_id, model=model, model_version=model_version,
            score=result["score"], normalized_score=result["normalized_score"], threshold=result["threshold"],
            regions_json=json.dumps(result["regions"]), width=int(image.shape[1]), height=int(image.shape[0]),
            image_file=image_file, overlay_file=overlay_file, roll_id=roll_id, across_mm=across_mm, along_m=along_m,
            alignment_json=json.dumps(result["alignment"]) if result.get("alignment") else None,
        )
        with self.database.session(write=True) as session:
            session.add(row)
            session.flush()
            record_id = row.id
        self._prune()
        return record_id

    def _prune(self) -> None:
        """Keep at most `retention` images: remove the oldest files, keep their records."""
        with self._prune_lock, self.database.session(write=True) as session:
            with_images = session.scalar(select(func.count()).where(DefectRecord.image_file.is_not(None))) or 0
            excess = with_images - self.retention
            if excess <= 0:
                return
            old = session.scalars(
                select(DefectRecord).where(DefectRecord.image_file.is_not(None)).order_by(DefectRecord.id).limit(excess)
            ).all()
            for row in old:
                for name in (row.image_file, row.overlay_file):
                    if name:
                        (self.image_store / name).unlink(missing_ok=True)
                row.image_file = row.overlay_file = None

    def list(self, *, camera_id: str | None = None, model: str | None = None, acknowledged: bool | None = None,
             since: datetime | None = None, until: datetime | None = None, offset: int = 0, limit: int = 50
             ) -> tuple[list[DefectRecord], int]:
        query = select(DefectRecord)
        if camera_id is not None:
            query = query.where(DefectRecord.camera_id == camera_id)
        if model is not None:
            query = query.where(DefectRecord.model == model)
        if acknowledged is not None:
            query = query.where(DefectRecord.acknowledged == acknowledged)
        if since is not None:
            query = query.where(DefectRecord.created_at >= since)
        if until is not None:
            query = query.where(DefectRecord.created_at <= until)
        with self.database.session() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(query.order_by(DefectRecord.id.desc()).offset(offset).limit(limit)).all()
            session.expunge_all()
        return list(rows), int(total)

    def get(self, defect_id: int) -> DefectRecord | None:
        with self.database.session() as session:
            row = session.get(DefectRecord, defect_id)
            if row is not None:
                session.expunge(row)
            return row

    def acknowledge(self, defect_id: int, label: str, note: str | None, by: str) -> DefectRecord | None:
        with self.database.session(write=True) as session:
            row = session.get(DefectRecord, defect_id)
            if row is None:
                return None
            row.acknowledged, row.label, row.note = True, label, note
            row.acknowledged_by, row.acknowledged_at = by, datetime.now(UTC)
            session.flush()
            session.expunge(row)
            return row

    def with_label(self, label: str, model: str | None = None, limit: int = 5000) -> list[DefectRecord]:
        query = select(DefectRecord).where(DefectRecord.label == label)
        if model is not None:
            query = query.where(DefectRecord.model == model)
        with self.database.session() as session:
            rows = list(session.scalars(query.order_by(DefectRecord.id).limit(limit)))
            session.expunge_all()
        return rows

    def labelled_records(self, model: str) -> list[DefectRecord]:
        """A model's defects operators acknowledged with a label, oldest first."""
        query = (select(DefectRecord).where(DefectRecord.model == model, DefectRecord.acknowledged.is_(True),
                                            DefectRecord.label.is_not(None)).order_by(DefectRecord.id))
        with self.database.session() as session:
            rows = list(session.scalars(query))
            session.expunge_all()
        return rows

    def labelled_scores(self, model: str) -> dict[str, list[float]]:
        """Scores of acknowledged defects by label, for a model: what a new threshold would keep."""
        with self.database.session() as session:
            rows = session.execute(select(DefectRecord.label, DefectRecord.score)
                                   .where(DefectRecord.model == model, DefectRecord.acknowledged.is_(True))).all()
        out: dict[str, list[float]] = {}
        for label, score in rows:
            out.setdefault(label or "", []).append(float(score))
        return out

    def file_path(self, name: str | None) -> Path | None:
        if not name:
            return None
        path = self.image_store / Path(name).name
        return path if path.is_file() else None
