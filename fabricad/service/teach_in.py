"""Teach-in: calibrating a model's threshold on the line's own good fabric.

A bundle's threshold comes from a few held-out training images. On AITEX-256 that gave 8 % false
alarms where 1 % was asked (BENCHMARKS.md): the line's lighting, lots and weave vary more than a
training set shows. Industrial inspection systems solve this with a teach-in: while the line runs
fabric known to be good, the system collects the scores of what it sees and sets the threshold
from them. Here an admin starts one for a model (optionally one camera), every inspected frame
with fabric in view adds its score, and once enough have come in the proposed threshold — the same
rule as training's, `threshold_for_fpr`, now on hundreds of the line's frames — can be applied
(and is then kept across restarts like any threshold set on the line). A teach-in in progress is
kept in the service's database too (every `SAVE_EVERY` frames), so a restart part-way loses at
most the last few frames, not the hour of good fabric already seen. Frames it has already
judged defective count too: during a teach-in the fabric is declared good, and leaving its
highest scores out would only set the threshold lower than the line's good fabric needs.

With `zones`, the teach-in also learns a threshold per band across the width (the operating
point's zones, `fabricad.inference.operating_point`): each frame's maximum per band is kept, and
each band gets the threshold its own good fabric gives, for `target_fpr / zones` so that the
frame's rate stays the target. A band whose good fabric runs high (a selvedge, a reed mark, the
lamp's falloff) then no longer sets the threshold of the calm middle, which a frame threshold
taught on the same frames would (its scores are the frames' maxima, the selvedge's). The
teach-in has at least 20 frames, and `threshold_for_fpr` falls back on a normal fit above the
highest score where they are too few for the quantile: the line benchmark's teach-in of two
scans per roll, with no such guard, taught bands far too low (BENCHMARKS.md).

Where the operating point sets a selvedge band (`selvedge_mm`), a frame's score is the rest of
the fabric's and the band's maximum comes beside it: the teach-in learns the threshold from the
first and, from the second, a threshold of the band's own, so that once applied the selvedge is
inspected for what stands out of its own weave instead of being left out.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from fabricad.inference import thresholds as T
from fabricad.inference.bundle import Threshold
from fabricad.inference.metrics import threshold_for_fpr
from fabricad.inference.operating_point import teach_selvedge_threshold, zone_scores

log = logging.getLogger(__name__)
SAVE_EVERY = 10
"""Frames between two saves of a running teach-in: a database write per frame would cost the
inspection path more than the few frames a restart can lose."""


def line_threshold(scores: list[float], target_fpr: float) -> Threshold:
    """The threshold for `target_fpr` on scores of the line's good fabric (training's rule)."""
    threshold = T.from_normal_scores(np.asarray(scores), target_fpr)
    return threshold.model_copy(update={"method": "line-teach-in"})


@dataclass
class TeachIn:
    model: str
    frames: int
    target_fpr: float
    camera_id: str | None = None
    version: str = ""
    """The bundle version (graph hash) the scores come from: a model exported again scores anew."""
    started_at: float = field(default_factory=time.time)
    scores: list[float] = field(default_factory=list)
    saved: int = field(default=0, repr=False)
    """How many of `scores` the database holds (`TeachIns` with a store)."""
    zones: int = 0
    """Bands across the width to teach a threshold each (0: the frame's threshold only)."""
    zone_scores: list[list[float]] = field(default_factory=list)
    """Each frame's maximum per band, beside `scores`."""
    selvedge_scores: list[float | None] = field(default_factory=list)
    """Each frame's selvedge band maximum, beside `scores` (None: no band, or no edge in view)."""

    @property
    def ready(self) -> bool:
        return len(self.scores) >= self.frames

    def proposal(self) -> Threshold | None:
        return line_threshold(self.scores, self.target_fpr) if self.ready else None

    def zone_proposal(self) -> list[float] | None:
        """Each band's threshold: what only `target_fpr / zones` of the good frames exceed in it.
        None without zones or before the teach-in is ready."""
        if not self.ready or not self.zones or not self.zone_scores:
            return None
        bands = np.asarray(self.zone_scores, np.float64)
        return [threshold_for_fpr(bands[:, k], self.target_fpr / bands.shape[1]) for k in range(bands.shape[1])]

    def selvedge_proposal(self, proposed: Threshold | None) -> float | None:
        """The selvedge band's threshold (`teach_selvedge_threshold`, never below the frame's
        `proposed` threshold, which the caller has already derived), where the operating point had
        a band during the teach-in and frames showed it; None otherwise or before it is ready."""
        if proposed is None:
            return None
        return teach_selvedge_threshold([s for s in self.selvedge_scores if s is not None], self.target_fpr, proposed.value)

    def status(self) -> dict:
        proposed = self.proposal()
        return {"model": self.model, "state": "ready" if self.ready else "collecting", "collected": len(self.scores),
                "frames": self.frames, "target_fpr": self.target_fpr, "camera_id": self.camera_id,
                "started_at": self.started_at, "proposed": proposed, "zones": self.zones,
                "proposed_zones": self.zone_proposal(), "proposed_selvedge_threshold": self.selvedge_proposal(proposed)}


class TeachIns:
    """The running teach-ins, one per model at most; fed from the inspection path of every
    camera and upload (`offer`), so it must be cheap and thread-safe. With a `store` (the
    service's `ThresholdStore`) they survive a restart."""

    def __init__(self, store=None) -> None:
        self._lock = threading.Lock()
        self._store = store
        self._running: dict[str, TeachIn] = {t.model: t for t in store.teach_ins()} if store is not None else {}

    def start(self, model: str, frames: int, target_fpr: float, camera_id: str | None = None, version: str = "",
              zones: int = 0) -> TeachIn:
        """A new teach-in for `model`; one already running for it is replaced."""
        teach_in = TeachIn(model, frames, target_fpr, camera_id, version, zones=zones)
        with self._lock:
            self._running = {**self._running, model: teach_in}
            self._save(teach_in)
        return teach_in

    def offer(self, model: str, camera_id: str | None, score: float, anomaly_map: np.ndarray | None = None,
              selvedge_score: float | None = None) -> None:
        teach_in = self._running.get(model)  # no lock for the common case: nothing running
        if teach_in is None or (teach_in.camera_id is not None and teach_in.camera_id != camera_id):
            return
        bands = zone_scores(anomaly_map, teach_in.zones).tolist() if teach_in.zones and anomaly_map is not None else None
        with self._lock:
            if not teach_in.ready and (bands is not None or not teach_in.zones):
                teach_in.scores.append(float(score))
                teach_in.selvedge_scores.append(None if selvedge_score is None else float(selvedge_score))
                if bands is not None:
                    teach_in.zone_scores.append(bands)
                if len(teach_in.scores) % SAVE_EVERY == 0 or teach_in.ready:
                    self._save(teach_in)

    def get(self, model: str) -> TeachIn | None:
        return self._running.get(model)

    def finish(self, model: str) -> TeachIn | None:
        with self._lock:
            running = dict(self._running)
            teach_in = running.pop(model, None)
            self._running = running
            if teach_in is not None and self._store is not None:
                self._store.drop_teach_in(model)
        return teach_in

    def _save(self, teach_in: TeachIn) -> None:
        """Keep the teach-in in the database; one that cannot be written still runs in memory
        (the store says why in the log)."""
        if self._store is not None and self._store.save_teach_in(teach_in):
            teach_in.saved = len(teach_in.scores)
