"""Persistence: a camera's region raises an alarm only once the camera has seen it in a row.

What a line-scan or area camera sees once and never again is seldom a defect in the cloth: lint
drifting through the view, a reflection, a sensor glitch. A defect is still there in the next
frame (frames overlap, or the fabric stands), at the same place on the roll. With the operating
point's `persistence_frames` = k, a region of a camera's frame is kept only when each of that
camera's k − 1 frames before it showed a region near it (`RollBox.near`, `gap_mm` of tolerance):
on the roll where one runs (the frames' positions move with the fabric), else in the image (a
still view). Regions not kept yet are dropped from the frame's result like regions the size
rule drops, so the verdict is DEFECT only for a region that has persisted; the frame that
completes the run raises the alarm. Uploads (no camera) are judged at once.
"""

from __future__ import annotations

import threading
from collections import deque

from fabricad.rolls.geometry import RollBox

GAP_MM = 5.0
"""How far apart two sightings of one defect may lie in consecutive frames (fabric mm)."""
KEPT_FRAMES = 10
"""Frames remembered per camera: the longest run `persistence_frames` may ask for."""


class Persistence:
    """The places of each camera's last frames' regions; thread-safe (cameras infer in batches)."""

    def __init__(self) -> None:
        self._recent: dict[str, deque[list[RollBox]]] = {}
        self._lock = threading.Lock()

    def confirm(self, camera_id: str, places: list[RollBox], frames: int, gap_mm: float = GAP_MM) -> list[bool]:
        """For each place of this frame's regions, whether each of the camera's `frames` − 1
        frames before it showed a region near it; this frame's places are remembered either way."""
        with self._lock:
            history = self._recent.setdefault(camera_id, deque(maxlen=KEPT_FRAMES))
            before = list(history)[len(history) - (frames - 1):] if frames > 1 else []
            kept = [len(before) == frames - 1 and all(any(place.near(seen, gap_mm) for seen in frame) for frame in before)
                    for place in places]
            history.append(places)
        return kept
