"""When to stop the machine: the rules mills run their looms and knitting machines by.

A roll is graded afterwards; a stop is decided now, defect by defect, from where each lies along
the roll and how long it is. `mode`:

- `any`: every defect stops the machine;
- `count_within`: `count` defects within `within_m` metres of each other;
- `longer_than`: a defect longer (along the roll) than `longer_than_mm`;
- `running`: a running defect, one seen in consecutive frames over at least `running_m` metres
  (a broken end or a missing yarn runs along the roll until someone mends it).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field


class StopRule(BaseModel):
    mode: Literal["never", "any", "count_within", "longer_than", "running"] = "never"
    count: int = Field(3, ge=1, le=1000, description="count_within: defects that stop the machine")
    within_m: float = Field(10.0, gt=0, le=10_000, description="count_within: over this length of the roll")
    longer_than_mm: float = Field(100.0, gt=0, le=1e6, description="longer_than: a defect this long stops it")
    running_m: float = Field(1.0, gt=0, le=10_000, description="running: a defect running this far stops it")
    merge_gap_mm: float = Field(50.0, ge=0, le=10_000, description="running: sightings closer than this are one defect")


@dataclass(frozen=True)
class Sighting:
    """A defect in one frame, on the roll: along-roll span in metres (from, to)."""

    along_m: tuple[float, float]

    @property
    def length_mm(self) -> float:
        return (self.along_m[1] - self.along_m[0]) * 1000


class StopDecider:
    """One camera's (or line's) running state for its `StopRule`. `see(sighting)` returns the
    reason to stop now, or None. Not thread-safe: one per camera, called in frame order."""

    def __init__(self, rule: StopRule):
        self.rule = rule
        self._recent: deque[float] = deque()  # along-roll starts of recent defects (count_within)
        self._run: tuple[float, float] | None = None  # the running defect being followed

    def see(self, sighting: Sighting) -> str | None:
        rule = self.rule
        if rule.mode == "never":
            return None
        if rule.mode == "any":
            return "defect"
        if rule.mode == "longer_than":
            return f"defect {sighting.length_mm:.0f} mm long" if sighting.length_mm > rule.longer_than_mm else None
        if rule.mode == "count_within":
            start = sighting.along_m[0]
            self._recent.append(start)
            while self._recent and start - self._recent[0] > rule.within_m:
                self._recent.popleft()
            if len(self._recent) >= rule.count:
                self._recent.clear()  # one stop per cluster: the count starts again after it
                return f"{rule.count} defects within {rule.within_m:g} m"
            return None
        # running: extend the followed defect while sightings touch it
        gap = rule.merge_gap_mm / 1000
        if self._run is not None and sighting.along_m[0] <= self._run[1] + gap:
            self._run = (self._run[0], max(self._run[1], sighting.along_m[1]))
        else:
            self._run = sighting.along_m
        if self._run[1] - self._run[0] >= rule.running_m:
            length = self._run[1] - self._run[0]
            self._run = None
            return f"running defect over {length:.2f} m"
        return None
