"""Checkpoints: what was trained, with everything needed to trust it later.

A checkpoint holds the trainable weights only; the teacher is rebuilt from its recorded weight
source and verified by hash, so a checkpoint never silently runs against other teacher weights.
Files contain tensors and plain Python values only and are read with `weights_only=True`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fabricad import __version__
from fabricad.backbones import state_hash
from fabricad.config import FabricadConfig
from fabricad.data.tiling import magnification
from fabricad.errors import CheckpointError, ConfigError, FabricadError, did_you_mean
from fabricad.models import DistillationModel, create_model

CHECKPOINT_FORMAT = 1
"""Bump when the payload layout changes incompatibly."""


@dataclass
class Checkpoint:
    config: FabricadConfig
    state_dict: dict[str, torch.Tensor]
    teacher: dict[str, Any]
    score_stats: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    teacher_state: dict[str, torch.Tensor] | None = None
    """Only for `random` teachers, which cannot be rebuilt from a source."""
    texture: dict | None = None
    """The training images' weave spectrum (`TextureReference.encode()`), when `model.align_texture`."""
    version: str = __version__


def teacher_identity(model: DistillationModel) -> dict[str, Any]:
    return {
        "name": model.teacher.name,
        "weights_source": model.teacher.weights_source,
        "sha256": model.teacher.weights_hash,
    }


def save_checkpoint(path: str | Path, model: DistillationModel, config: FabricadConfig, **extra: Any) -> Path:
    """`model`'s trainable weights with `config` and `extra` (score_stats, training, texture)."""
    return write_checkpoint(path, Checkpoint(
        config=config,
        state_dict={k: v.detach().cpu() for k, v in model.trainable_state_dict().items()},
        teacher=teacher_identity(model),
        score_stats=extra.get("score_stats", {}),
        training=extra.get("training", {}),
        teacher_state=({k: v.detach().cpu() for k, v in model.teacher.state_dict().items()}
                       if model.teacher.weights_source == "random" else None),
        texture=extra.get("texture"),
    ))


def write_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "fabricad_version": __version__,
        "config": checkpoint.config.model_dump(mode="json"),
        "teacher": checkpoint.teacher,
        "state_dict": checkpoint.state_dict,
        "teacher_state": checkpoint.teacher_state,
        "score_stats": checkpoint.score_stats,
        "training": checkpoint.training,
        "texture": checkpoint.texture,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: an interrupted save never leaves a half-written checkpoint
    return path


def read_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if path.is_dir():
        path = path / "model.ckpt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or holds non-tensor objects
        raise CheckpointError(f"{path} is not a readable fabricad checkpoint: {str(exc).splitlines()[0]}") from None
    if not isinstance(payload, dict) or "format" not in payload or "state_dict" not in payload:
        raise CheckpointError(f"{path} is not a fabricad checkpoint")
    if payload["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} has checkpoint format {payload['format']} (written by fabricad "
            f"{payload.get('fabricad_version', '?')}); this fabricad {__version__} reads format "
            f"{CHECKPOINT_FORMAT}. Use the matching fabricad version or retrain."
        )
    try:
        config = FabricadConfig.from_dict(payload["config"])
    except FabricadError as exc:
        raise CheckpointError(f"{path}: stored configuration is not valid for this version: {exc}") from None
    return Checkpoint(
        config=config,
        state_dict=payload["state_dict"],
        teacher=payload["teacher"],
        score_stats=payload.get("score_stats") or {},
        training=payload.get("training") or {},
        teacher_state=payload.get("teacher_state"),
        texture=payload.get("texture"),
        version=payload.get("fabricad_version", "?"),
    )


def build_model(checkpoint: Checkpoint) -> DistillationModel:
    """Rebuild the model of `checkpoint`, verifying the teacher is the one it was trained with."""
    config = checkpoint.config.model.model_copy(deep=True)
    source = checkpoint.teacher.get("weights_source", config.teacher.weights)
    config.teacher.weights = "random" if source == "random" else source.removeprefix("file:")
    model = create_model(config)
    if checkpoint.teacher_state is not None:
        model.teacher.load_state_dict(checkpoint.teacher_state)
        model.teacher.weights_hash = state_hash(model.teacher.body)
    expected, actual = checkpoint.teacher["sha256"], model.teacher.weights_hash
    if model.teacher.name != checkpoint.teacher["name"] or expected != actual:
        raise CheckpointError(
            f"checkpoint was trained with teacher {checkpoint.teacher['name']} "
            f"({source}, sha256 {expected[:12]}) but the teacher available here is {model.teacher.name} "
            f"({model.teacher.weights_source}, sha256 {actual[:12]}); the student only fits its own teacher"
        )
    model.load_trainable_state_dict(checkpoint.state_dict)
    model.roi_scale = magnification(checkpoint.training.get("dataset", {}).get("tile"), checkpoint.config.data.image_size)
    return model.eval()


INFERENCE_SETTINGS = ("model.fabric_roi", "model.fabric_edges", "model.roi_margin", "model.map_max_stride",
                      "model.blur_sigma", "train.teacher_runtime")
"""Settings a trained model may change at evaluation and export: they post-process the map or
choose what runs the frozen teacher, and touch no trained weight."""


def load_model(path: str | Path, overrides: list[str] | None = None) -> tuple[DistillationModel, Checkpoint]:
    """The model and its checkpoint; `overrides` (`model.fabric_roi=false`, …) may set only
    INFERENCE_SETTINGS, and the checkpoint's config then records them (exported bundles too)."""
    checkpoint = read_checkpoint(path)
    if overrides:
        wrong = [o for o in overrides if o.partition("=")[0].strip() not in INFERENCE_SETTINGS]
        if wrong:
            hint = did_you_mean(wrong[0].partition("=")[0].strip(), INFERENCE_SETTINGS, n=1, cutoff=0.8)
            raise ConfigError(f"{', '.join(wrong)}: only {', '.join(INFERENCE_SETTINGS)} can change after training{hint}")
        checkpoint.config = checkpoint.config.with_overrides(overrides)
    return build_model(checkpoint), checkpoint
