"""A candidate bundle from the operators' feedback (`fabricad finetune`): fine-tune the model of
a bundle on the frames operators labelled false alarms, export it as that bundle was exported,
and judge it against that bundle on the same images (`fabricad.inference.retraining`).

The service runs this in a process of its own and reads the status file it keeps; from the
command line it is the same job with a progress bar.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from fabricad.data import load_dataset
from fabricad.data.holdout import holdout_split
from fabricad.data.tiling import as_trained
from fabricad.defect_types import TYPES_FILE
from fabricad.errors import FabricadError
from fabricad.export.onnx_export import export_checkpoint
from fabricad.inference.bundle import CHECKPOINT_FILE, read_bundle
from fabricad.inference.engine import InferenceEngine
from fabricad.inference.retraining import (
    RetrainStatus,
    compare,
    judge,
    read_status,
    write_status,
)
from fabricad.training.finetune import DEFAULT_LR_SCALE, DEFAULT_STEPS, finetune
from fabricad.training.trainer import FINETUNE_SHARE

RUN, BUNDLE = "run", "bundle"
"""Inside a job's folder: the fine-tune's checkpoint folder, and the candidate bundle."""


def retrain_candidate(bundle: Path, false_alarms: list[Path], out: Path, *, defects: list[Path] = (),
                      data: Path | None = None, steps: int = DEFAULT_STEPS, max_minutes: float | None = 10.0,
                      lr_scale: float = DEFAULT_LR_SCALE, share: float = FINETUNE_SHARE, status_file: Path | None = None,
                      job: str | None = None, progress: bool = True) -> RetrainStatus:
    """Fine-tune, export and judge; `out/bundle` is the candidate. Progress and the result go to
    `status_file` as they happen; a failure is recorded there before it is raised."""
    meta, _ = read_bundle(bundle)
    started = read_status(status_file) if status_file is not None else None  # the service's: it names the model its way
    status = RetrainStatus(job=job or out.name, model=started.model if started else meta.name,
                           old_version=meta.sha256[:12], steps=steps, false_alarm_frames=len(false_alarms),
                           defect_frames=len(defects), pid=os.getpid())

    def report(**change) -> None:
        for key, value in change.items():
            setattr(status, key, value)
        if status_file is not None:
            write_status(status_file, status)

    report(phase="fine-tuning")
    try:
        checkpoint = Path(bundle) / CHECKPOINT_FILE
        if not checkpoint.is_file():
            raise FabricadError(f"{bundle} carries no training checkpoint to fine-tune: export it with "
                                "`fabricad export --with-checkpoint`")
        last = [0.0]

        def on_step(step: int, total: int) -> None:
            if time.monotonic() - last[0] > 1.0 or step == total:  # the file at most once a second
                last[0] = time.monotonic()
                report(step=step, steps=total)

        result = finetune(checkpoint, false_alarms, out / RUN, data=data, steps=steps, max_minutes=max_minutes,
                          lr_scale=lr_scale, share=share, progress=progress, on_step=on_step)
        report(phase="exporting", step=result.steps)
        # The fine-tune's checkpoint names its training images (where `data` pointed): export calibrates on them.
        candidate = export_checkpoint(result.checkpoint, out / BUNDLE, precision=meta.precision, name=meta.name,
                                      progress=progress, with_checkpoint=True)
        if (Path(bundle) / TYPES_FILE).is_file():  # the defect types are the model's too: they stay
            shutil.copy2(Path(bundle) / TYPES_FILE, candidate / TYPES_FILE)
        new_meta, _ = read_bundle(candidate)
        report(phase="comparing", new_version=new_meta.sha256[:12])
        rows = compare(InferenceEngine.load(bundle), InferenceEngine.load(candidate), false_alarms=false_alarms,
                       defects=list(defects), **_reference_images(candidate), on_phase=lambda p: report(phase=p))
        verdict, reasons = judge(rows)
        report(state="done", phase="done", comparison=rows, verdict=verdict, reasons=reasons)
    except Exception as exc:
        report(state="failed", phase="failed", error=str(exc) or type(exc).__name__)
        raise
    return status


def _reference_images(candidate: Path) -> dict:
    """The held-out normal images both models were calibrated on and the dataset's test split,
    cut as training cut them (as `fabricad eval` and export do)."""
    from fabricad.training import read_checkpoint

    checkpoint = read_checkpoint(candidate / CHECKPOINT_FILE)
    split = load_dataset(checkpoint.config.data.path, checkpoint.config.data.category)
    info = checkpoint.training.get("dataset", {})
    _, holdout = holdout_split(as_trained(split.train, info), checkpoint.config)
    return {"holdout": holdout, "test": as_trained(split.test, info)}
