"""Thresholds set on the line, kept across restarts.

An operator who tuned a model's threshold on the dashboard (or an admin through the API) expects
it to hold after a power cut or an update; until now a restart silently put the bundle's own
threshold back. Each model's last threshold set by hand is stored with the version (graph hash)
of the bundle it was set for: a model exported again has scores of its own, so a threshold set
for the old one is not applied to it and its bundle's calibrated threshold holds.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from fabricad.inference.bundle import Threshold
from fabricad.inference.engine import InferenceEngine
from fabricad.inference.operating_point import OperatingPoint
from fabricad.service.database import Database
from fabricad.service.records import (
    LineScoresRecord,
    OperatingPointRecord,
    TeachInRecord,
    TeachInScoreRecord,
    ThresholdRecord,
)
from fabricad.service.teach_in import TeachIn

log = logging.getLogger(__name__)


class ThresholdStore:
    def __init__(self, database: Database):
        self.database = database

    def save(self, model: str, version: str, threshold: Threshold) -> None:
        with self.database.session(write=True) as session:
            session.merge(ThresholdRecord(model=model, model_version=version, value=threshold.value,
                                          method=threshold.method, target_fpr=threshold.target_fpr,
                                          calibration_count=threshold.calibration_count, set_at=datetime.now(UTC)))

    def forget(self, model: str) -> None:
        with self.database.session(write=True) as session:
            record = session.get(ThresholdRecord, model)
            if record is not None:
                session.delete(record)

    def stored(self, model: str, version: str) -> Threshold | None:
        """The threshold last set for this model's bundle `version`; None if none was, or it was
        set for another version."""
        with self.database.session() as session:
            record = session.get(ThresholdRecord, model)
        if record is None or record.model_version != version:
            return None
        return Threshold(value=record.value, method=record.method, target_fpr=record.target_fpr,
                         calibration_count=record.calibration_count)

    def save_line_scores(self, model: str, version: str, scores: list[float]) -> None:
        with self.database.session(write=True) as session:
            session.merge(LineScoresRecord(model=model, model_version=version, scores_json=json.dumps(scores),
                                           collected_at=datetime.now(UTC)))

    def line_scores(self, model: str, version: str) -> list[float] | None:
        """The last teach-in's scores for this bundle version; None if it had none."""
        with self.database.session() as session:
            record = session.get(LineScoresRecord, model)
        return json.loads(record.scores_json) if record is not None and record.model_version == version else None

    def save_teach_in(self, teach_in: TeachIn) -> bool:
        """Write the scores of `teach_in` that are not saved yet (`teach_in.saved` of them are);
        with none saved yet, it is new: its record replaces any earlier one for the model.
        False if the database could not be written (the teach-in goes on in memory)."""
        try:
            with self.database.session(write=True) as session:
                if teach_in.saved == 0:
                    session.query(TeachInScoreRecord).filter_by(model=teach_in.model).delete()
                    session.merge(TeachInRecord(model=teach_in.model, model_version=teach_in.version, frames=teach_in.frames,
                                                target_fpr=teach_in.target_fpr, camera_id=teach_in.camera_id,
                                                started_at=teach_in.started_at, zones=teach_in.zones))
                bands = teach_in.zone_scores[teach_in.saved:] if teach_in.zones else [None] * (len(teach_in.scores) - teach_in.saved)
                session.add_all(TeachInScoreRecord(model=teach_in.model, score=score, selvedge_score=selvedge,
                                                   zone_scores_json=json.dumps(band) if band is not None else None)
                                for score, band, selvedge in zip(teach_in.scores[teach_in.saved:], bands,
                                                                 teach_in.selvedge_scores[teach_in.saved:]))
            return True
        except SQLAlchemyError as exc:
            log.error("teach-in for %s: cannot be saved (%s); it goes on in memory only", teach_in.model, type(exc).__name__)
            return False

    def drop_teach_in(self, model: str) -> None:
        try:
            with self.database.session(write=True) as session:
                session.query(TeachInScoreRecord).filter_by(model=model).delete()
                session.query(TeachInRecord).filter_by(model=model).delete()
        except SQLAlchemyError as exc:
            log.error("teach-in for %s: cannot be removed from the database (%s)", model, type(exc).__name__)

    def teach_ins(self) -> list[TeachIn]:
        """The teach-ins that were running when the service last stopped."""
        try:
            with self.database.session() as session:
                records = session.query(TeachInRecord).all()
                scores: dict[str, list[float]] = {r.model: [] for r in records}
                bands: dict[str, list[list[float]]] = {r.model: [] for r in records}
                selvedges: dict[str, list[float | None]] = {r.model: [] for r in records}
                for model, score, zones, selvedge in session.query(
                        TeachInScoreRecord.model, TeachInScoreRecord.score, TeachInScoreRecord.zone_scores_json,
                        TeachInScoreRecord.selvedge_score).order_by(TeachInScoreRecord.id):
                    if model in scores:
                        scores[model].append(score)
                        selvedges[model].append(selvedge)
                        if zones is not None:
                            bands[model].append(json.loads(zones))
        except SQLAlchemyError as exc:
            log.error("running teach-ins cannot be read (%s); none is resumed", type(exc).__name__)
            return []
        return [TeachIn(r.model, r.frames, r.target_fpr, r.camera_id, r.model_version, r.started_at, scores[r.model],
                        saved=len(scores[r.model]), zones=r.zones or 0, zone_scores=bands[r.model],
                        selvedge_scores=selvedges[r.model]) for r in records]

    def save_operating_point(self, model: str, version: str, op: OperatingPoint | None) -> None:
        """Keep the operating point set for this bundle version (None: the threshold alone)."""
        with self.database.session(write=True) as session:
            if op is None:
                session.query(OperatingPointRecord).filter_by(model=model).delete()
            else:
                session.merge(OperatingPointRecord(model=model, model_version=version, rules_json=op.model_dump_json(),
                                                   set_at=datetime.now(UTC)))

    def stored_operating_point(self, model: str, version: str) -> OperatingPoint | None:
        """The operating point last set for this model's bundle `version`; None if none was, or
        it was set for another version (whose scores, and so zone thresholds, are not this one's)."""
        with self.database.session() as session:
            record = session.get(OperatingPointRecord, model)
        if record is None or record.model_version != version:
            return None
        return OperatingPoint.model_validate_json(record.rules_json)

    def restore(self, model: str, version: str, engine: InferenceEngine) -> None:
        """Give a freshly loaded engine the threshold and operating point set for it on the line,
        if any. A database that cannot be read leaves the bundle's threshold and says so: the
        model still serves, and /readyz already reports the database."""
        try:
            threshold = self.stored(model, version)
            op = self.stored_operating_point(model, version)
        except SQLAlchemyError as exc:
            log.error("model %s: the threshold set on the line cannot be read (%s); serving with the bundle's",
                      model, type(exc).__name__)
            return
        if threshold is not None:
            engine.use_threshold(threshold)
            log.info("model %s: threshold %.6g (%s) as set on the line", model, threshold.value, threshold.method)
        if op is not None:
            engine.use_operating_point(op)
            log.info("model %s: operating point as set on the line: %s", model, op.describe())
