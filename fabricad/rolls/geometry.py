"""From pixels in a camera frame to millimetres on the roll, and from many sightings to one defect.

Roll coordinates: `across` in mm from the roll's left edge, `along` in metres from the roll's
start. A frame's top row lies at the frame's along-roll position; rows run along the roll, so a
row `y` lies `y × mm_per_px` further on. Each camera covers a band of the width starting at its
`offset_mm`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, Field


class CameraPlacement(BaseModel):
    camera_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    offset_mm: float = Field(0.0, ge=0, description="the camera's left image column, across the roll width")
    mm_per_px: float = Field(1.0, gt=0, le=100, description="calibration: fabric millimetres per image pixel")


@dataclass
class RollBox:
    """An axis-aligned box on the roll; `outline` is the region's polygon in (across mm, along m)."""

    across_mm: tuple[float, float]
    along_m: tuple[float, float]
    outline: list[tuple[float, float]] = field(default_factory=list)

    def near(self, other: RollBox, gap_mm: float) -> bool:
        gap_m = gap_mm / 1000
        return (self.across_mm[0] <= other.across_mm[1] + gap_mm and other.across_mm[0] <= self.across_mm[1] + gap_mm
                and self.along_m[0] <= other.along_m[1] + gap_m and other.along_m[0] <= self.along_m[1] + gap_m)

    def union(self, other: RollBox) -> RollBox:
        return RollBox(
            (min(self.across_mm[0], other.across_mm[0]), max(self.across_mm[1], other.across_mm[1])),
            (min(self.along_m[0], other.along_m[0]), max(self.along_m[1], other.along_m[1])),
            self.outline + other.outline,
        )

    @property
    def centre(self) -> tuple[float, float]:
        return (sum(self.across_mm) / 2, sum(self.along_m) / 2)


def region_on_roll(region: dict, frame_along_m: float, placement: CameraPlacement) -> RollBox:
    """Map one region of a frame (x, y, width, height and optional outline in pixels) onto the roll."""
    s = placement.mm_per_px

    def to_roll(x: float, y: float) -> tuple[float, float]:
        return (placement.offset_mm + x * s, frame_along_m + y * s / 1000)

    x0, y0 = to_roll(region["x"], region["y"])
    x1, y1 = to_roll(region["x"] + region["width"], region["y"] + region["height"])
    outline = [to_roll(x, y) for x, y in region.get("outline") or []]
    return RollBox((x0, x1), (y0, y1), outline)


def merge_into(boxes: dict[int, RollBox], new: RollBox, gap_mm: float) -> tuple[int | None, list[int]]:
    """Which known defects `new` belongs to: (the one to keep or None for a new defect, the others it
    joins and that should be folded into the kept one)."""
    hits = sorted(k for k, box in boxes.items() if box.near(new, gap_mm))
    if not hits:
        return None, []
    return hits[0], hits[1:]


def merge_all(boxes: list[RollBox], gap_mm: float) -> list[RollBox]:
    """Boxes in the order a roll sees them merged into defects, as the service's roll tracker
    merges sightings (`merge_into`), held in memory (the line benchmark's simulated rolls)."""
    defects: dict[int, RollBox] = {}
    for k, box in enumerate(boxes):
        keep, fold = merge_into(defects, box, gap_mm)
        if keep is None:
            defects[k] = box
            continue
        merged = defects[keep].union(box)
        for other in fold:
            merged = merged.union(defects.pop(other))
        defects[keep] = merged
    return list(defects.values())
