"""What every distillation model shares: a frozen teacher, trainable parts, one anomaly map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fabricad.backbones import TeacherEncoder
from fabricad.config import ModelConfig
from fabricad.data.fabric_edges import BRIGHT, DARK, FLAT_RANGE, FLAT_WINDOW
from fabricad.errors import CheckpointError, ConfigError
from fabricad.models.anomaly_map import AnomalyMapGenerator

Features = list[torch.Tensor]


ROI_WINDOW = FLAT_WINDOW
"""The fabric ROI's flatness window, in source pixels (`fabricad.data.fabric_edges.FLAT_WINDOW`)."""


def background_mask(x: torch.Tensor, margin: int, window: int = ROI_WINDOW) -> torch.Tensor:
    """1 where the image is not fabric: what lies beyond the fabric's edge, flat (no texture in a
    `window`) and saturated (near white or black), widened by `margin` pixels so the
    fabric/background boundary goes too. Only rows or columns that are background from one side
    of the image to the other count: the fabric edge runs along the roll and so crosses the whole
    frame, while a hole, however large and white (a backlit inspection table shows the lamp
    through it), does not, and keeps its map. Max-pooling and reductions only, so it exports to
    ONNX with the rest of the graph. x: (B, 3, H, W) in [0, 1]."""
    # The flatness window loses `window // 2` pixels at the edge of the background: give them back.
    background = square_max(flat_saturated(x, window), 2 * (window // 2) + 1)
    across = torch.maximum(background.amin(dim=2, keepdim=True), background.amin(dim=3, keepdim=True))
    across = across.expand_as(background)
    return square_max(across, 2 * margin + 1) if margin else across


def fabric_keep(x: torch.Tensor, margin: int, scale: float = 1.0) -> torch.Tensor:
    """(B, 1, H, W): 0 on background (`background_mask`), 1 on fabric; the flatness window and the
    margin are sizes on the fabric, so for tiles magnified `scale` times for the network both grow
    with it (the window stays at least 3 px: one pixel is always "flat")."""
    window = 2 * max(1, round(ROI_WINDOW // 2 * scale)) + 1
    return 1 - background_mask(x, round(margin * scale), window)


def flat_saturated(x: torch.Tensor, window: int = ROI_WINDOW) -> torch.Tensor:
    """(B, 1, H, W), 1 where the `window` around a pixel has no texture (gray range under 3/255)
    and the pixel is near white or black: what background looks like, wherever it lies."""
    gray = x.mean(dim=1, keepdim=True)
    flat = (square_max(gray, window) + square_max(-gray, window)) < FLAT_RANGE / 255  # local max - local min
    saturated = (gray > BRIGHT / 255) | (gray < DARK / 255)
    return (flat & saturated).to(x.dtype)


def square_max(x: torch.Tensor, size: int) -> torch.Tensor:
    """The maximum over a `size`×`size` window (odd size) around each pixel, same output size.
    A row pass then a column pass: the same result as one square max-pool, but 2·size comparisons
    per pixel instead of size² (a 105-px window on a 512² tile: seconds instead of minutes)."""
    half = size // 2
    x = F.max_pool2d(x, (1, size), 1, (0, half))
    return F.max_pool2d(x, (size, 1), 1, (half, 0))


class DistillationModel(nn.Module):
    """Teacher + student. `distill` gives the feature pairs training compares; `forward` is
    inference, image batch (RGB in [0, 1]) → (anomaly map (B,1,H,W), score (B,)), which is
    exactly the graph that gets exported."""

    def __init__(self, teacher: TeacherEncoder, config: ModelConfig):
        super().__init__()
        self.config = config
        self.teacher = teacher
        self.anomaly_map = AnomalyMapGenerator(config.map_mode, config.blur_sigma)
        self.roi_scale = 1.0
        """Network pixels per source pixel, for tiles magnified to the input size (`build_model`
        sets it from the checkpoint): the fabric ROI's window and margin are sizes on the fabric,
        so a magnified tile needs them as many times wider, or the flatness test, seeing less
        texture, takes small bright defects for background."""

    def targets(self, x: torch.Tensor) -> Features:
        """Teacher features the student must reproduce."""
        return self.teacher(x)

    def student(self, targets: Features) -> Features:
        raise NotImplementedError

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """What the teacher sees: optionally standardised, optionally reflect-padded."""
        if self.config.standardize:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = x.std(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) / (std + 1e-4) * 0.2 + 0.5
        if self.config.pad and not self.config.tile_context:
            p = self.config.pad
            x = F.pad(x, (p, p, p, p), mode="reflect")
        return x

    @property
    def context(self) -> int:
        return self.config.context

    def image_size(self, x: torch.Tensor) -> tuple[int, int]:
        """The size of the image an input holds: with `tile_context` inputs come padded."""
        return x.shape[-2] - 2 * self.context, x.shape[-1] - 2 * self.context

    def distill(self, x: torch.Tensor) -> tuple[Features, Features]:
        """(teacher, student) features of the prepared input; training compares these."""
        with torch.no_grad():
            targets = self.targets(self.prepare(x))
        return targets, self.student(targets)

    def scale_strides(self) -> list[int]:
        """The stride of each distilled scale, in the order `targets` returns them."""
        return list(self.teacher.strides)

    def map_scales(self) -> list[int]:
        """Indices of the distilled scales that make the anomaly map (`model.map_max_stride`)."""
        limit = self.config.map_max_stride
        strides = self.scale_strides()
        keep = [i for i, s in enumerate(strides) if limit is None or s <= limit]
        if not keep:
            raise ConfigError(f"model.map_max_stride={limit} leaves no scale for the anomaly map "
                              f"(distilled strides: {strides})")
        return keep

    def map_and_score(self, teacher: Features, student: Features, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly map cropped back to the input's `size`, and its maximum."""
        keep = self.map_scales()
        teacher, student = [teacher[i] for i in keep], [student[i] for i in keep]
        p = self.config.pad
        full = self.anomaly_map(teacher, student, (size[0] + 2 * p, size[1] + 2 * p))
        anomaly_map = full[:, :, p : p + size[0], p : p + size[1]] if p else full
        return anomaly_map, torch.amax(anomaly_map, dim=(1, 2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        teacher, student = self.distill(x)
        return self.on_fabric(x, *self.map_and_score(teacher, student, self.image_size(x)))

    def on_fabric(self, x: torch.Tensor, anomaly_map: torch.Tensor, score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The map and score of input `x` with the fabric ROI applied (when configured): what
        inference returns, and so what calibration must score too."""
        if not self.config.fabric_roi:
            return anomaly_map, score
        if self.config.tile_context:
            p = self.config.pad
            x = x[..., p : x.shape[-2] - p, p : x.shape[-1] - p]
        anomaly_map = anomaly_map * fabric_keep(x, self.config.roi_margin, self.roi_scale)
        return anomaly_map, torch.amax(anomaly_map, dim=(1, 2, 3))

    # The teacher is rebuilt from its own weight source; checkpoints hold only what was trained.
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("teacher.")}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        expected = self.trainable_state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
        if missing or unexpected or wrong:
            raise CheckpointError(
                "checkpoint weights do not fit this model architecture "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]})"
            )
        self.load_state_dict(state, strict=False)

    def train(self, mode: bool = True) -> DistillationModel:
        super().train(mode)
        self.teacher.train(False)
        return self
