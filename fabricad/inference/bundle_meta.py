"""The metadata of a model made from a checkpoint: what a bundle's `model.json` says, and what
the engine reads when it runs the checkpoint itself (PyTorch, or a graph being exported), so a
checkpoint and its bundle carry one contract.

A checkpoint here is any object with a `fabricad.training.Checkpoint`'s fields (config, training,
texture, teacher): this module stays on the torch-free side and does not import that class."""

from __future__ import annotations

import math

from fabricad import __version__
from fabricad.errors import FabricadError
from fabricad.inference import thresholds
from fabricad.inference.bundle import (
    OPSET,
    BundleMeta,
    InputSpec,
    Preprocess,
    Threshold,
)

UNCALIBRATED = Threshold(value=math.inf, method="uncalibrated")
"""The threshold of a model scored before calibration (evaluation, calibration itself): nothing
is a defect, and no region is looked for."""


def preprocess_of(dataset_info: dict, size: tuple[int, int], context: int) -> Preprocess:
    """How a served image is cut, from how the training images were: tiled datasets are served
    by tiles of their own native size (recorded by training since tiles could be magnified),
    with the context the model was trained with."""
    if not dataset_info.get("tiled"):
        return Preprocess(mode="resize", context=context)
    tile = dataset_info.get("tile")
    return Preprocess(mode="tile", tile=tuple(tile) if tile and tuple(tile) != tuple(size) else None, context=context)


def scoring_meta(size: tuple[int, int], *, preprocess: Preprocess | None = None, model: dict | None = None,
                 texture: dict | None = None, normal_scores: list[float] | None = None, name: str = "model",
                 sha256: str = "", precision: str = "fp32", opset: int = 0, teacher: dict | None = None,
                 training_data: dict | None = None) -> BundleMeta:
    """Metadata for an engine over a model; thresholded on `normal_scores` when given, else
    `UNCALIBRATED`."""
    scores = list(normal_scores or [])
    return BundleMeta(
        name=name,
        sha256=sha256,
        precision=precision,
        opset=opset,
        input=InputSpec(height=size[0], width=size[1]),
        preprocess=preprocess or Preprocess(),
        threshold=thresholds.from_normal_scores(scores) if scores else UNCALIBRATED.model_copy(),
        score_scale=thresholds.score_scale(scores) if scores else 1.0,
        normal_scores=scores,
        teacher=teacher or {},
        model=model or {},
        training_data=training_data or {},
        texture=texture or {},
        fabricad_version=__version__,
    )


def checkpoint_meta(checkpoint, normal_scores: list[float] | None = None, *, name: str = "model",
                    sha256: str = "", precision: str = "fp32", opset: int = OPSET) -> BundleMeta:
    """The metadata of a model made from `checkpoint` (uncalibrated without `normal_scores`)."""
    dataset_info = checkpoint.training.get("dataset", {})
    config = checkpoint.config
    size = tuple(config.data.image_size)
    return scoring_meta(
        size,
        preprocess=preprocess_of(dataset_info, size, config.model.context),
        model=config.model.model_dump(mode="json"),
        texture=(checkpoint.texture or {}) if config.model.align_texture else {},
        normal_scores=normal_scores,
        name=name, sha256=sha256, precision=precision, opset=opset,
        teacher=checkpoint.teacher,
        training_data=dataset_info,
    )


def bundle_meta(checkpoint, normal_scores: list[float], *, name: str, sha256: str = "",
                precision: str = "fp32", opset: int = OPSET) -> BundleMeta:
    """What a bundle made from `checkpoint` ships: calibrated on `normal_scores`, which it must have."""
    if not normal_scores:
        raise FabricadError("the checkpoint holds no held-out normal scores to calibrate a threshold from; "
                            "retrain with data.holdout_fraction > 0")
    return checkpoint_meta(checkpoint, normal_scores, name=name, sha256=sha256, precision=precision, opset=opset)
