"""One physical defect, however many frames and cameras saw it: each region of a defective frame
is placed on the roll and merged with the roll defects it lies near (`merge_gap_mm`); a region
that bridges two known defects joins them into one."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from fabricad.rolls.geometry import CameraPlacement, merge_into, region_on_roll
from fabricad.service.records import RollDefectRecord
from fabricad.service.schemas import RollSpec


def _simplify(outline: list, limit: int = 256) -> list:
    step = max(1, len(outline) // limit)
    return [[round(a, 2), round(b, 5)] for a, b in outline[::step]]


def place_regions(session: Session, roll_id: str, spec: RollSpec, placement: CameraPlacement, frame_along_m: float,
                  regions: list[dict], defect_id: int | None) -> list[int]:
    """Merge a frame's regions into the roll's defects (in the caller's transaction); returns the
    roll-defect ids the regions became part of. `defect_id`: the frame's defect-log entry."""
    touched: list[int] = []
    for region in regions:
        box = region_on_roll(region, frame_along_m, placement)
        reach = box.along_m[0] - spec.merge_gap_mm / 1000
        nearby = {d.id: d for d in session.scalars(select(RollDefectRecord).where(
            RollDefectRecord.roll_id == roll_id, RollDefectRecord.along_max >= reach))}
        keep, fold = merge_into({k: d.box for k, d in nearby.items()}, box, spec.merge_gap_mm)
        if keep is None:
            record = RollDefectRecord(roll_id=roll_id, created_at=datetime.now(UTC), across_min=box.across_mm[0],
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
        if keep is None or region["max_score"] > record.max_score:  # the strongest sighting names the type
            record.defect_type, record.type_confidence = region.get("type"), region.get("type_confidence")
        score = max(record.max_score, region["max_score"])
        labels = [record.label]
        for k in fold:  # a new sighting that bridges two known defects joins them
            sightings |= set(json.loads(nearby[k].sightings_json))
            cameras |= set(json.loads(nearby[k].cameras_json))
            if nearby[k].max_score > score:
                record.defect_type, record.type_confidence = nearby[k].defect_type, nearby[k].type_confidence
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


def label_sightings(session: Session, defect_id: int, label: str) -> None:
    """An operator labelled a frame-level defect: the roll defects it is part of take the label."""
    for record in session.scalars(select(RollDefectRecord).where(RollDefectRecord.sightings_json.contains(str(defect_id)))):
        if defect_id in json.loads(record.sightings_json):
            record.label = label
