"""From per-scale feature distances to a full-resolution anomaly map and an image score."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from fabricad.models.loss import cosine_distance_maps


def gaussian_kernel_1d(sigma: float) -> torch.Tensor:
    radius = math.ceil(4 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


class GaussianBlur(nn.Module):
    """Separable Gaussian blur as two fixed convolutions.

    A fixed conv (not torchvision's functional blur) because it traces to plain ONNX Conv and
    Pad nodes; reflect padding keeps the borders from darkening.
    """

    def __init__(self, sigma: float):
        super().__init__()
        kernel = gaussian_kernel_1d(sigma)
        self.radius = (len(kernel) - 1) // 2
        self.register_buffer("kx", kernel.view(1, 1, 1, -1), persistent=False)
        self.register_buffer("ky", kernel.view(1, 1, -1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.radius
        # Reflect padding needs r < size; a smaller map than the kernel gets replicate padding.
        mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), self.kx)
        return F.conv2d(F.pad(x, (0, 0, r, r), mode=mode), self.ky)


class AnomalyMapGenerator(nn.Module):
    """Per-scale `1 - cos` maps, upsampled to the input size, combined and blurred."""

    def __init__(self, mode: Literal["add", "mul"] = "add", sigma: float = 4.0):
        super().__init__()
        self.mode = mode
        self.blur = GaussianBlur(sigma) if sigma > 0 else nn.Identity()

    @staticmethod
    def scale_maps(teacher: list[torch.Tensor], student: list[torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
        """Each scale's `1 - cos` map, upsampled to `size`, before they are combined."""
        return [F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                for m in cosine_distance_maps(teacher, student)]

    def forward(self, teacher: list[torch.Tensor], student: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        maps = self.scale_maps(teacher, student, size)
        combined = maps[0]
        for m in maps[1:]:
            combined = combined * m if self.mode == "mul" else combined + m
        return self.blur(combined)
