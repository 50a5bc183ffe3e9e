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
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from fabricad.inference import thresholds as T
from fabricad.inference.bundle import Threshold

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

    @property
    def ready(self) -> bool:
        return len(self.scores) >= self.frames

    def proposal(self) -> Threshold | None:
        return line_threshold(self.scores, self.target_fpr) if self.ready else None

    def status(self) -> dict:
        return {"model": self.model, "state": "ready" if self.ready else "collecting", "collected": len(self.scores),
                "frames": self.frames, "target_fpr": self.target_fpr, "camera_id": self.camera_id,
                "started_at": self.started_at, "proposed": self.proposal()}


class TeachIns:
    """The running teach-ins, one per model at most; fed from the inspection path of every
    camera and upload (`offer`), so it must be cheap and thread-safe. With a `store` (the
    service's `ThresholdStore`) they survive a restart."""

    def __init__(self, store=None) -> None:
        self._lock = threading.Lock()
        self._store = store
        self._running: dict[str, TeachIn] = {t.model: t for t in store.teach_ins()} if store is not None else {}

    def start(self, model: str, frames: int, target_fpr: float, camera_id: str | None = None, version: str = "") -> TeachIn:
        """A new teach-in for `model`; one already running for it is replaced."""
        teach_in = TeachIn(model, frames, target_fpr, camera_id, version)
        with self._lock:
            self._running = {**self._running, model: teach_in}
            self._save(teach_in)
        return teach_in

    def offer(self, model: str, camera_id: str | None, score: float) -> None:
        teach_in = self._running.get(model)  # no lock for the common case: nothing running
        if teach_in is None or (teach_in.camera_id is not None and teach_in.camera_id != camera_id):
            return
        with self._lock:
            if not teach_in.ready:
                teach_in.scores.append(float(score))
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
