"""The 4-point system (ASTM D5430) for grading a fabric roll.

Points per defect by its length in any direction; holes by their own, harsher, scale; at most
`max_points_per_metre` for any one linear metre of the roll; a defect that runs over a metre
gets the maximum for every metre it touches. The roll's figure is points per 100 m² (ASTM states
it per 100 yd²; the default limit, 40 points per 100 yd², is converted here once). A running
defect longer than `running_defect_fail_m` fails the roll whatever the points, and so does a roll
whose cameras missed more than `max_uninspected_percent` of its length or width (`coverage.py`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from pydantic import BaseModel, Field, model_validator

from fabricad.defect_types.classifier import GEOMETRY_TYPES, UNKNOWN

SQ_YARD_M2 = 0.9144**2
FALSE_ALARM = "false_alarm"


def per_100_yd2_to_per_100_m2(points: float) -> float:
    return points / (100 * SQ_YARD_M2) * 100


class GradingRules(BaseModel):
    """Per article; stored with the roll so a report always shows the rules it was graded by."""

    length_limits_mm: list[float] = Field([75, 150, 230], description="upper bounds for 1, 2, 3 points; longer is 4")
    hole_limit_mm: float = Field(25, gt=0, description="holes up to this size get 2 points, larger ones 4")
    hole_labels: list[str] = Field(["hole"], description="operator labels that make a defect a hole")
    compact_as_hole_max_mm: float | None = Field(
        None, gt=0, description="optional rule: an unlabelled defect no larger than this in both directions "
                                "and roughly round (aspect ≤ 1.5) counts as a hole")
    max_points_per_metre: int = Field(4, ge=1)
    limit_per_100_m2: float = Field(round(per_100_yd2_to_per_100_m2(40), 2), gt=0,
                                    description="pass at or under this many points per 100 m² (default: 40 / 100 yd²)")
    running_defect_fail_m: float = Field(10.0, gt=0)
    max_uninspected_percent: float | None = Field(
        2.0, ge=0, le=100, description="fail a roll when more of its length than this went uninspected (a camera "
                                       "down, frames dropped, no fabric in view), or more of its width is in no "
                                       "camera's view; null: report it only")

    @model_validator(mode="after")
    def _ascending(self) -> GradingRules:
        limits = self.length_limits_mm
        if len(limits) != 3 or any(b <= a for a, b in zip(limits, limits[1:])) or limits[0] <= 0:
            raise ValueError("length_limits_mm must be three ascending positive lengths (1, 2, 3 points)")
        return self


@dataclass
class GradedDefect:
    """A defect on the roll in roll coordinates: across the width in mm, along the roll in metres."""

    id: int
    across_mm: tuple[float, float]
    along_m: tuple[float, float]
    label: str | None = None

    @property
    def width_mm(self) -> float:
        return self.across_mm[1] - self.across_mm[0]

    @property
    def length_mm(self) -> float:
        return round((self.along_m[1] - self.along_m[0]) * 1000, 6)  # µm: no float noise at the limits

    @property
    def size_mm(self) -> float:
        """ASTM D5430 measures a defect's length in any direction: its larger extent."""
        return max(self.width_mm, self.length_mm)


def grading_type(defect_type: str | None) -> str | None:
    """A predicted defect type as a grading label: a classifier's named type grades like an
    operator's label (a `hole` by the hole rule); `unknown` and the geometry rules' shapes say
    nothing the size rules do not, so they leave the defect unlabelled."""
    if defect_type is None or defect_type == UNKNOWN or defect_type in GEOMETRY_TYPES:
        return None
    return defect_type


def is_hole(defect: GradedDefect, rules: GradingRules) -> bool:
    if defect.label is not None:
        return defect.label in rules.hole_labels
    limit = rules.compact_as_hole_max_mm
    if limit is None:
        return False
    small, large = sorted((max(defect.width_mm, 1e-9), max(defect.length_mm, 1e-9)))
    return large <= limit and large / small <= 1.5


def defect_points(defect: GradedDefect, rules: GradingRules) -> int:
    if defect.label == FALSE_ALARM:
        return 0
    size = defect.size_mm
    if is_hole(defect, rules):
        return 2 if size <= rules.hole_limit_mm else 4
    for points, limit in enumerate(rules.length_limits_mm, start=1):
        if size <= limit:
            return points
    return 4


@dataclass
class RollGrade:
    points: int
    points_per_100_m2: float
    limit_per_100_m2: float
    passed: bool
    reasons: list[str]
    defect_points: dict[int, int]
    """points each defect earned before the per-metre cap"""
    metre_points: dict[int, int] = field(default_factory=dict)
    """points charged to each linear metre (after the cap), by metre index"""
    area_m2: float = 0.0
    """the inspected area: the width the cameras cover × the length they saw"""
    uninspected_m: float = 0.0
    uncovered_mm: float = 0.0

    def as_dict(self) -> dict:
        return {
            "points": self.points, "points_per_100_m2": self.points_per_100_m2,
            "limit_per_100_m2": self.limit_per_100_m2, "passed": self.passed, "reasons": self.reasons,
            "defect_points": {str(k): v for k, v in self.defect_points.items()},
            "metre_points": {str(k): v for k, v in sorted(self.metre_points.items())}, "area_m2": self.area_m2,
            "uninspected_m": self.uninspected_m, "uncovered_mm": self.uncovered_mm,
        }


def grade_roll(defects: list[GradedDefect], width_mm: float, length_m: float, rules: GradingRules,
               uninspected_m: float = 0.0, uncovered_mm: float = 0.0) -> RollGrade:
    """Grade a roll of `width_mm` × `length_m` from its defects. Points are per 100 m² of what was
    inspected: `uninspected_m` of the length (stretches some camera did not see) and
    `uncovered_mm` of the width (in no camera's lane) are not counted in the area, so missing
    fabric cannot dilute the defects found, and beyond the rules' limit either fails the roll."""
    if width_mm <= 0:
        raise ValueError("the roll's usable width must be positive")
    per_defect = {d.id: defect_points(d, rules) for d in defects}
    raw: dict[int, int] = defaultdict(int)
    reasons: list[str] = []
    for d in defects:
        points = per_defect[d.id]
        if points == 0:
            continue
        first, last = math.floor(d.along_m[0]), math.floor(max(d.along_m[1] - 1e-9, d.along_m[0]))
        if d.length_mm > 1000:  # a running defect: the maximum for every metre it touches
            for metre in range(first, last + 1):
                raw[metre] += rules.max_points_per_metre
        else:
            raw[math.floor((d.along_m[0] + d.along_m[1]) / 2)] += points
        if d.length_mm / 1000 > rules.running_defect_fail_m:
            reasons.append(f"defect {d.id} runs {d.length_mm / 1000:.1f} m (> {rules.running_defect_fail_m:g} m)")
    capped = {m: min(p, rules.max_points_per_metre) for m, p in raw.items()}
    total = sum(capped.values())
    length = max(length_m, max((d.along_m[1] for d in defects), default=0.0))
    uninspected_m = min(max(uninspected_m, 0.0), length)
    uncovered_mm = min(max(uncovered_mm, 0.0), width_mm)
    inspected, covered = length - uninspected_m, width_mm - uncovered_mm
    per_area = total * 100_000 / (covered * inspected) if inspected > 0 and covered > 0 else 0.0
    if per_area > rules.limit_per_100_m2:
        reasons.append(f"{per_area:.1f} points per 100 m² exceeds the limit of {rules.limit_per_100_m2:g}")
    limit = rules.max_uninspected_percent
    if limit is not None and length > 0 and uninspected_m / length * 100 > limit:
        reasons.append(f"{uninspected_m:.2f} m of {length:.2f} m ({uninspected_m / length:.0%}) was not inspected "
                       f"(limit {limit:g} %)")
    if limit is not None and uncovered_mm / width_mm * 100 > limit:
        reasons.append(f"{uncovered_mm:.0f} mm of the {width_mm:g} mm width ({uncovered_mm / width_mm:.0%}) is in no "
                       f"camera's view (limit {limit:g} %)")
    return RollGrade(
        points=total, points_per_100_m2=round(per_area, 3), limit_per_100_m2=rules.limit_per_100_m2,
        passed=not reasons, reasons=reasons, defect_points=per_defect, metre_points=capped,
        area_m2=covered * inspected / 1000, uninspected_m=round(uninspected_m, 4), uncovered_mm=round(uncovered_mm, 1),
    )
