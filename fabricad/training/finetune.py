"""Fine-tuning a trained model on more normal images: the training step of the operators'
feedback loop (`fabricad finetune`).

Frames operators confirmed as false alarms are defect-free fabric the model had not learnt:
a texture lot, a selvedge mark, lighting the training images did not show. The model in use
keeps learning from its own training images with those frames added, so it learns them without
forgetting the rest (trained on the new frames alone, the student would drift from the fabric it
knew). What changes from a first training run:

- the weights start from the checkpoint, with a fresh optimiser at a lower learning rate
  (`lr_scale`), for a few hundred steps rather than a budget of minutes;
- the new frames, cut as training cut its images, are repeated to a `share` of the training set,
  so a handful of frames among hundreds of tiles is seen every few steps;
- the last weights are kept, not those with the lowest held-out loss: the held-out images are the
  old normal ones, and the weights that fit them best are those that have not learnt the new frames
  yet. Whether the candidate is worse than the model in use is judged afterwards on the held-out and
  labelled images (`fabricad.inference.retraining`), not by early stopping.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fabricad.config import FabricadConfig
from fabricad.data import Sample, read_image
from fabricad.data.tiling import tile_whole_images
from fabricad.errors import DataError
from fabricad.training.checkpoint import Checkpoint, read_checkpoint
from fabricad.training.trainer import FINETUNE_SHARE, FineTune, train

DEFAULT_STEPS = 200
DEFAULT_LR_SCALE = 0.2


def finetune_config(checkpoint: Checkpoint, data: Path | None, category: str | None, steps: int,
                    max_minutes: float | None, lr_scale: float) -> FabricadConfig:
    """The checkpoint's own configuration, pointed at its training images (or `data`), for a run
    of `steps` at `lr_scale` × its learning rate."""
    config = checkpoint.config
    path = data or config.data.path
    if path is None or not Path(path).exists():
        raise DataError(f"the model's training images are not at {path}: fine-tuning keeps learning from them beside the "
                        "new frames; pass --data (the service: retrain_data)")
    return config.model_copy(update={
        "data": config.data.model_copy(update={"path": str(path), "category": category or config.data.category}),
        "train": config.train.model_copy(update={"max_steps": steps, "max_minutes": max_minutes,
                                                 "lr": config.train.lr * lr_scale, "patience": 10**6}),
    })


def cut_as_trained(frames: list[Path], dataset_info: dict) -> list[Sample]:
    """Whole frames as the model's training images were fed: the native tiles it was trained on
    (a scan's, or those `data.whole_images=tile` cut), else whole, to be resized."""
    tile = dataset_info.get("tile")
    side = dataset_info.get("whole_images_tile") or (tile[0] if tile else None)
    if tile and tile[0] != tile[1] and not dataset_info.get("whole_images_tile"):
        raise DataError(f"the model was trained on {tile[1]}x{tile[0]} tiles; fine-tuning cuts new frames into square tiles only")
    samples = [Sample(Path(p), 0, group=str(p)) for p in frames]
    return tile_whole_images(samples, int(side)) if side else samples


def finetune(checkpoint_path: Path, frames: list[Path], out: Path, *, data: Path | None = None,
             category: str | None = None, steps: int = DEFAULT_STEPS, max_minutes: float | None = 10.0,
             lr_scale: float = DEFAULT_LR_SCALE, share: float = FINETUNE_SHARE, progress: bool = True,
             on_step: Callable[[int, int], None] | None = None):
    """Fine-tune the model at `checkpoint_path` with `frames` (defect-free images) added to its
    training images; writes `out/model.ckpt` and returns the `TrainResult`."""
    if not frames:
        raise DataError("no frames to learn: fine-tuning needs at least one image labelled a false alarm")
    for frame in frames:  # a bad frame fails the job now, by name, not in the middle of training
        read_image(frame)
    checkpoint = read_checkpoint(checkpoint_path)
    config = finetune_config(checkpoint, data, category, steps, max_minutes, lr_scale)
    extra = cut_as_trained(frames, checkpoint.training.get("dataset", {}))
    return train(config, out, finetune=FineTune(checkpoint, extra, share), progress=progress, on_step=on_step)
