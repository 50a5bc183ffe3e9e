"""The defect log: every DEFECT verdict, durable, with its image and overlay on disk.

SQLite (WAL, synchronous=FULL: a committed defect survives a killed process and a power cut)
by default, PostgreSQL by URL. Image files get names the service generates; nothing from a
request ever becomes a path. Columns for roll and position are here from the start so that roll
inspection can fill them without a migration.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class DefectRecord(Base):
    __tablename__ = "defects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
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
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Roll inspection (filled when a roll is running): which roll and where on it.
    roll_id: Mapped[str | None] = mapped_column(String(64), index=True)
    across_mm: Mapped[float | None] = mapped_column(Float)
    along_m: Mapped[float | None] = mapped_column(Float)
    # Added later (texture alignment): how the scan was turned before scoring, JSON; NULL if not.
    alignment_json: Mapped[str | None] = mapped_column(Text)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class DefectLog:
    def __init__(self, database_url: str, image_store: Path, retention: int = 10_000):
        self.engine = create_engine(database_url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        self.add_new_columns()
        self.image_store = Path(image_store)
        self.image_store.mkdir(parents=True, exist_ok=True)
        self.retention = retention
        self._prune_lock = threading.Lock()

    def add_new_columns(self) -> None:
        """A database written by an earlier version lacks the columns added since; each is nullable,
        so ADD COLUMN brings every table of this database (the defect log's, the rolls') up to date
        in place and every existing record is kept."""
        inspector = inspect(self.engine)
        with self.engine.begin() as connection:
            for table in Base.metadata.sorted_tables:
                present = {c["name"] for c in inspector.get_columns(table.name)}
                for column in table.columns:
                    if column.name not in present:
                        kind = column.type.compile(dialect=self.engine.dialect)
                        connection.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # any failure means "not ready"; the reason is logged by the caller
            return False

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
        with Session(self.engine) as session, session.begin():
            session.add(row)
            session.flush()
            record_id = row.id
        self._prune()
        return record_id

    def _prune(self) -> None:
        """Keep at most `retention` images: remove the oldest files, keep their records."""
        with self._prune_lock, Session(self.engine) as session, session.begin():
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
        with Session(self.engine) as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(query.order_by(DefectRecord.id.desc()).offset(offset).limit(limit)).all()
            session.expunge_all()
        return list(rows), int(total)

    def get(self, defect_id: int) -> DefectRecord | None:
        with Session(self.engine) as session:
            row = session.get(DefectRecord, defect_id)
            if row is not None:
                session.expunge(row)
            return row

    def acknowledge(self, defect_id: int, label: str, note: str | None, by: str) -> DefectRecord | None:
        with Session(self.engine) as session, session.begin():
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
        with Session(self.engine) as session:
            rows = list(session.scalars(query.order_by(DefectRecord.id).limit(limit)))
            session.expunge_all()
        return rows

    def labelled_scores(self, model: str) -> dict[str, list[float]]:
        """Scores of acknowledged defects by label, for a model: what a new threshold would keep."""
        with Session(self.engine) as session:
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
