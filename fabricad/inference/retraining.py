"""What a retraining job reports, and how its candidate is judged against the model in use.

The operators' feedback loop: frames they labelled false alarms become normal training images,
a fine-tune of the model in use learns them (`fabricad finetune`, the training side), and the
candidate it exports is offered for activation only if it is not worse than the model it would
replace. "Not worse" is decided here, torch-free, by running both bundles through the same
engine the service runs them on: each at its own calibrated threshold (the new model's scores
have a scale of their own, so a threshold set on the line for the old one means nothing to it).

The job runs in a process of its own (the service stays torch-free and keeps inspecting); it
writes its `RetrainStatus` to a JSON file the service reads, so progress survives a dashboard
reload and the result survives a service restart.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from fabricad.data.images import read_image
from fabricad.data.samples import Sample
from fabricad.inference import metrics as M
from fabricad.inference.engine import InferenceEngine
from fabricad.inference.scoring import score_samples

FALSE_ALARMS = "labelled false alarms still raised"

JobState = Literal["running", "done", "failed", "cancelled", "activated", "discarded"]
FINISHED: tuple[JobState, ...] = ("done", "failed", "cancelled", "activated", "discarded")


class ComparisonRow(BaseModel):
    """One figure of the old model beside the candidate's, on the same images."""

    measure: str
    images: int
    old: float | None
    new: float | None
    better: Literal["lower", "higher"]
    unit: Literal["share", "auroc"] = "share"
    tolerance: float = Field(0.0, ge=0, description="how far the candidate may fall behind before it counts as worse")
    gate: bool = Field(True, description="whether a worse figure here withholds the candidate")

    def change(self) -> str:
        """`measure: old → new`, as a person reads it (shares in per cent)."""
        def shown(x: float | None) -> str:
            return "n/a" if x is None else f"{100 * x:.1f} %" if self.unit == "share" else f"{x:.3f}"
        return f"{self.measure}: {shown(self.old)} → {shown(self.new)}"

    @property
    def verdict(self) -> Literal["better", "same", "worse", "n/a"]:
        if self.old is None or self.new is None:
            return "n/a"
        gain = (self.new - self.old) if self.better == "higher" else (self.old - self.new)
        if gain > 1e-9:
            return "better"
        return "worse" if gain < -self.tolerance - 1e-9 else "same"


class RetrainStatus(BaseModel):
    """A retraining job as its status file holds it."""

    job: str
    model: str
    state: JobState = "running"
    phase: str = "starting"
    step: int = 0
    steps: int = 0
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    old_version: str = ""
    new_version: str | None = None
    false_alarm_frames: int = 0
    defect_frames: int = 0
    comparison: list[ComparisonRow] = []
    verdict: Literal["better", "not_worse", "worse"] | None = None
    reasons: list[str] = []
    """why the candidate is withheld (`worse`), or what it gained"""
    error: str | None = None
    pid: int | None = None

    @property
    def offered(self) -> bool:
        """The candidate may be activated: finished, judged, not worse."""
        return self.state == "done" and self.verdict in ("better", "not_worse")


def write_status(path: Path, status: RetrainStatus) -> None:
    """Atomically: the service reads the file while the job writes it."""
    status.updated_at = datetime.now(UTC)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".status-", delete=False) as f:
        f.write(status.model_dump_json(indent=2))
    os.replace(f.name, path)


def read_status(path: Path) -> RetrainStatus | None:
    try:
        return RetrainStatus.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def _alarmed(engine: InferenceEngine, paths: list[Path]) -> float | None:
    """Share of frames the engine calls DEFECT, each inspected whole as the service inspects it."""
    if not paths:
        return None
    return float(np.mean([engine.predict([read_image(p)], regions=False)[0].is_defect for p in paths]))


def judge(rows: list[ComparisonRow]) -> tuple[Literal["better", "not_worse", "worse"], list[str]]:
    """`worse` when any gating figure fell behind by more than its tolerance; `better` when the
    labelled false alarms fell (the point of the job) and nothing gating got worse."""
    worse = [r.change() for r in rows if r.gate and r.verdict == "worse"]
    if worse:
        return "worse", worse
    gained = [r.change() for r in rows if r.verdict == "better"]
    alarms = next((r for r in rows if r.measure == FALSE_ALARMS), None)
    return ("better" if alarms is not None and alarms.verdict == "better" else "not_worse"), gained


def compare(old: InferenceEngine, new: InferenceEngine, *, false_alarms: list[Path], defects: list[Path],
            holdout: list[Sample], test: list[Sample],
            on_phase: Callable[[str], None] = lambda phase: None) -> list[ComparisonRow]:
    """Both models, each at its own calibrated threshold, on: the frames operators labelled false
    alarms (the candidate learnt them: fewer should alarm), the frames they confirmed as defects
    (none may be lost), the held-out normal images both were calibrated on (shown, not a gate:
    calibration makes them alike), and the dataset's test split where it has one (image AUROC and
    the defects caught at the threshold)."""
    rows = []
    on_phase("comparing on the labelled false alarms")
    rows.append(ComparisonRow(measure=FALSE_ALARMS, images=len(false_alarms), old=_alarmed(old, false_alarms),
                              new=_alarmed(new, false_alarms), better="lower"))
    if defects:
        on_phase("comparing on the confirmed defects")
        rows.append(ComparisonRow(measure="confirmed defects caught", images=len(defects), old=_alarmed(old, defects),
                                  new=_alarmed(new, defects), better="higher"))
    if holdout:
        on_phase("comparing on the held-out normal images")
        o, n = score_samples(old, holdout).scores, score_samples(new, holdout).scores
        rows.append(ComparisonRow(measure="held-out normal images alarmed", images=len(holdout),
                                  old=float((o > old.threshold.value).mean()), new=float((n > new.threshold.value).mean()),
                                  better="lower", gate=False))
    labels = np.array([s.label for s in test], dtype=int)
    if test and labels.min() != labels.max():
        on_phase("comparing on the dataset's test images")
        o, n = score_samples(old, test).scores, score_samples(new, test).scores
        rows.append(ComparisonRow(measure="test images: AUROC", images=len(test), old=M.auroc(labels, o),
                                  new=M.auroc(labels, n), better="higher", unit="auroc", tolerance=0.01))
        defective = labels == 1
        rows.append(ComparisonRow(measure="test defects caught", images=int(defective.sum()),
                                  old=float((o[defective] > old.threshold.value).mean()),
                                  new=float((n[defective] > new.threshold.value).mean()), better="higher", tolerance=0.02))
        rows.append(ComparisonRow(measure="test normal images alarmed", images=int((~defective).sum()),
                                  old=float((o[~defective] > old.threshold.value).mean()),
                                  new=float((n[~defective] > new.threshold.value).mean()), better="lower", tolerance=0.02))
    return rows
