"""What happens to a frame once the engine has judged it, for uploads and cameras alike:
metrics, the teach-in, its place on the running roll, the overlay (drawn once), the defect log
and the roll's defects. The routers and the camera manager hand frames in; nothing here knows
about HTTP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fabricad.inference.engine import Result
from fabricad.inference.visualize import overlay
from fabricad.rolls.geometry import CameraPlacement, region_on_roll
from fabricad.service.defect_log import DefectLog
from fabricad.service.line_io.outputs import LineOutputs
from fabricad.service.metrics import ServiceMetrics
from fabricad.service.persistence import Persistence
from fabricad.service.registry import ModelEntry, ModelRegistry
from fabricad.service.rolls import RollTracker
from fabricad.service.teach_in import TeachIns


@dataclass
class Inspected:
    """One frame after the pipeline: the answer's fields (`result.as_dict()` plus the roll's
    `roll_id`, `along_m`, `roll_defect_ids` where a roll runs), the defect-log id of a defect, and
    the overlay when one was drawn (always for a defect; for an OK frame when asked)."""

    entry: ModelEntry
    result: Result
    data: dict
    defect_id: int | None
    overlay: np.ndarray | None


class InspectionPipeline:
    def __init__(self, registry: ModelRegistry, defects: DefectLog, rolls: RollTracker, metrics: ServiceMetrics,
                 teach_ins: TeachIns, line: LineOutputs | None = None):
        self.registry, self.defects, self.rolls = registry, defects, rolls
        self.metrics, self.teach_ins, self.line = metrics, teach_ins, line
        self.persistence = Persistence()

    def inspect(self, image: np.ndarray, *, model: str | None = None, camera_id: str | None = None,
                along_m: float | None = None, want_overlay: bool = False) -> Inspected:
        """One image through the (active or named) model, then `record`. Blocking: call it from
        a worker thread. `along_m`: the frame's own roll position when its sender knows it."""
        entry, engine = self.registry.engine(model)
        return self.record(entry, image, engine.inspect(image), camera_id, want_overlay, along_m=along_m)

    def inspect_frames(self, model: str | None, frames: list) -> list[tuple[dict, Inspected]]:
        """The camera manager's call: one engine call for a micro-batch of one model's frames;
        each comes back with its live event and an overlay for the live view."""
        entry, engine = self.registry.engine(model)
        results = engine.predict([f.image for f in frames])
        out = []
        for frame, result in zip(frames, results):
            done = self.record(entry, frame.image, result, frame.camera_id, want_overlay=True,
                               captured_at=frame.captured_at, odometer=(frame.odometer_m, frame.acquisition))
            event = {**done.data, "camera_id": frame.camera_id, "sequence": frame.sequence, "model": entry.name,
                     "model_version": entry.version, "defect_id": done.defect_id, "captured_at": frame.captured_at}
            out.append((event, done))
        return out

    def record(self, entry: ModelEntry, image: np.ndarray, result: Result, camera_id: str | None,
               want_overlay: bool = False, captured_at: float | None = None, along_m: float | None = None,
               odometer: tuple[float | None, int] = (None, 0)) -> Inspected:
        """`odometer`: a line-scan frame's (metres since its camera's acquisition began, which
        acquisition), the exact way to place it on its roll."""
        data = result.as_dict()
        self.metrics.latency.labels(entry.name).observe(result.latency_ms / 1000)
        if not result.fabric_in_view:
            self.metrics.no_fabric.labels(entry.name).inc()
        else:
            self.teach_ins.offer(entry.name, camera_id, result.score, result.anomaly_map, result.selvedge_score)
        placed = self.rolls.roll_for_camera(camera_id)
        if placed is not None:
            roll, placement = placed
            at = time.time() if captured_at is None else captured_at
            if along_m is None and odometer[0] is not None:
                along_m = self.rolls.odometer_position(roll, placement.camera_id, odometer[0], odometer[1], at)
            if along_m is None:
                along_m = self.rolls.frame_position(roll, at)
            if result.fabric_in_view:  # a frame of the bare table inspects nothing: the roll's coverage shows it
                self.rolls.frame_seen(roll, placement.camera_id,
                                      (along_m, along_m + image.shape[0] * placement.mm_per_px / 1000),
                                      (placement.offset_mm, placement.offset_mm + image.shape[1] * placement.mm_per_px))
            data.update(roll_id=roll.id, along_m=along_m)
        op = entry.engine.operating_point if entry.engine is not None else None
        if camera_id is not None and op is not None and op.persistence_frames > 1:
            self._persist(result, data, camera_id, op.persistence_frames,
                          (placement, along_m) if placed is not None else (CameraPlacement(camera_id=camera_id, mm_per_px=op.mm_per_px), 0.0))
        self.metrics.inspections.labels(entry.name, data["verdict"]).inc()
        picture = overlay(image, result.anomaly_map, result.threshold) if (want_overlay or result.is_defect) else None
        defect_id, boxes = None, None
        if result.is_defect:
            where = {}
            if placed is not None:
                boxes = [region_on_roll(region, along_m, placement) for region in data["regions"]]
                top = boxes[0]
                where = {"roll_id": roll.id, "across_mm": top.centre[0], "along_m": top.centre[1]}
            defect_id = self.defects.record(model=entry.name, model_version=entry.version, result=data, image=image,
                                            overlay=picture, camera_id=camera_id, **where)
            self.metrics.defects.labels(entry.name).inc()
            if placed is not None:
                data["roll_defect_ids"] = self.rolls.observe(roll, placement, along_m, image.shape[0], data["regions"],
                                                             defect_id)
        if self.line is not None:
            self.line.frame(camera_id, {**data, "model": entry.name, "captured_at": captured_at}, defect_id, boxes)
        return Inspected(entry, result, data, defect_id, picture)

    def _persist(self, result: Result, data: dict, camera_id: str, frames: int, where: tuple[CameraPlacement, float]) -> None:
        """Keep only the regions this camera has seen `frames` times in a row (`persistence`):
        the verdict follows the regions kept."""
        placement, along_m = where
        kept = self.persistence.confirm(camera_id, [region_on_roll(r, along_m, placement) for r in data["regions"]], frames)
        result.regions = [r for r, k in zip(result.regions, kept) if k]
        data["regions"] = [r for r, k in zip(data["regions"], kept) if k]
        result.is_defect = data["is_defect"] = bool(result.regions)
        data["verdict"] = "DEFECT" if result.is_defect else "OK"
