"""Which stretches of a roll each camera has really seen, and which it has not.

A roll's grade is only as good as the fabric the cameras saw. Fabric goes unseen when a camera
disconnects, when an overloaded queue drops frames, when the frame rate is too low for the line
speed (frames no longer abut), or when the web breaks and the camera sees only the table (the
model's fabric ROI reports such frames). Each camera's seen stretches are kept as sorted,
disjoint spans along the roll, in metres; whatever lies between them, or before the first and
after the last up to the roll's length, was not inspected in that camera's lane. Across the
roll, each camera's lane (its frames' width on the fabric) is kept too: a band of the usable width
in no camera's lane is never inspected at all.
"""

from __future__ import annotations

import bisect
import copy
import json
from dataclasses import dataclass, field

Spans = list[list[float]]
"""[[start_m, end_m], …], sorted and disjoint"""


def add_span(spans: Spans, start: float, end: float, join_m: float) -> bool:
    """Insert the stretch `start`–`end` into `spans` in place, joining it with spans closer than
    `join_m` (frame timing jitter is not a gap). Returns True when the number of spans changed,
    i.e. a gap opened or closed: the moment worth saving."""
    if end < start:
        start, end = end, start
    before = len(spans)
    i = bisect.bisect_left(spans, [start - join_m])
    if i > 0 and spans[i - 1][1] >= start - join_m:
        i -= 1
    j = i
    while j < len(spans) and spans[j][0] <= end + join_m:
        start, end = min(start, spans[j][0]), max(end, spans[j][1])
        j += 1
    spans[i:j] = [[start, end]]
    return len(spans) != before


@dataclass
class Stretch:
    """A stretch of the roll that at least one camera's lane did not see."""

    along_m: tuple[float, float]
    cameras: list[str] = field(default_factory=list)

    @property
    def length_m(self) -> float:
        return self.along_m[1] - self.along_m[0]

    def as_dict(self) -> dict:
        return {"along_m": [round(self.along_m[0], 4), round(self.along_m[1], 4)], "length_m": round(self.length_m, 4),
                "cameras": self.cameras}


def gaps(spans: Spans, length_m: float) -> list[tuple[float, float]]:
    """The stretches of 0–`length_m` that `spans` leave uncovered."""
    found, at = [], 0.0
    for start, end in spans:
        if start > at:
            found.append((at, min(start, length_m)))
        at = max(at, end)
        if at >= length_m:
            break
    if at < length_m:
        found.append((at, length_m))
    return [(a, b) for a, b in found if b > a]


def uninspected(spans_by_camera: dict[str, Spans], cameras: list[str], length_m: float, min_gap_m: float) -> list[Stretch]:
    """Stretches of the roll's first `length_m` metres that one or more of `cameras` did not see
    (a camera that saw nothing misses all of it), overlapping gaps of different cameras merged
    into one stretch naming them all. Gaps shorter than `min_gap_m` are left out."""
    pieces = sorted((a, b, camera) for camera in cameras for a, b in gaps(spans_by_camera.get(camera, []), length_m)
                    if b - a >= min_gap_m)
    stretches: list[Stretch] = []
    for a, b, camera in pieces:
        if stretches and a <= stretches[-1].along_m[1]:
            last = stretches[-1]
            last.along_m = (last.along_m[0], max(last.along_m[1], b))
            if camera not in last.cameras:
                last.cameras.append(camera)
        else:
            stretches.append(Stretch((a, b), [camera]))
    for stretch in stretches:
        stretch.cameras.sort()
    return stretches


@dataclass
class RollCoverage:
    """What a roll's cameras saw: along the roll, each camera's covered stretches (m); across it,
    each camera's lane (mm), known once a frame from it has arrived."""

    spans: dict[str, Spans] = field(default_factory=dict)
    lanes: dict[str, list[float]] = field(default_factory=dict)

    def see(self, camera: str, along_m: tuple[float, float], across_mm: tuple[float, float], join_m: float) -> bool:
        """A frame with fabric in view. True when a gap opened or closed (see `add_span`)."""
        lane = self.lanes.get(camera)
        self.lanes[camera] = [min(lane[0], across_mm[0]), max(lane[1], across_mm[1])] if lane else list(across_mm)
        return add_span(self.spans.setdefault(camera, []), *along_m, join_m)

    @property
    def furthest_m(self) -> float:
        return max((s[-1][1] for s in self.spans.values() if s), default=0.0)

    def uncovered_width(self, width_mm: float, min_gap_mm: float) -> list[tuple[float, float]]:
        """Bands of the usable width that no camera's lane covers (only cameras that delivered a
        frame have a known lane); bands narrower than `min_gap_mm` are left out."""
        if not self.lanes:
            return []
        merged: Spans = []
        for a, b in self.lanes.values():
            add_span(merged, a, b, 0.0)
        return [(a, b) for a, b in gaps(merged, width_mm) if b - a >= min_gap_mm]

    def to_json(self) -> str:
        return json.dumps({"spans": {c: [[round(a, 5), round(b, 5)] for a, b in s] for c, s in self.spans.items()},
                           "lanes": {c: [round(a, 3), round(b, 3)] for c, (a, b) in self.lanes.items()}},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> RollCoverage:
        data = json.loads(text or "{}")
        return cls(data.get("spans", {}), data.get("lanes", {}))

    def copy(self) -> RollCoverage:
        return copy.deepcopy(self)
