"""Pseudo-defects painted onto normal training images, for denoising distillation.

Plain reverse distillation only ever sees normal fabric, so nothing stops the student from
learning to reproduce whatever the teacher shows it — defects included — and a tiny defect
then leaves little discrepancy. With `train.pseudo_defects` > 0, part of each batch is shown to
the bottleneck with a painted defect while the target stays the teacher's features of the clean
image: the student learns to answer "normal fabric" where the input is not (the denoising idea
of RD++ and DeSTSeg). The shapes are the ones AITEX and a loom produce most: thin yarn-like
lines across or along the tile, and small blobs; their content is the fabric brightened,
darkened, or shifted by a few pixels (a misweave).
"""

from __future__ import annotations

import torch


def paint(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A copy of `x` (B, C, H, W in [0, 1]) with one pseudo-defect in every image."""
    batch, _, height, width = x.shape
    out = x.clone()

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * torch.rand((), generator=generator).item()

    def integer(low: int, high: int) -> int:
        return int(torch.randint(low, high, (), generator=generator).item())

    rows = torch.arange(height, device=x.device, dtype=torch.float32)[:, None]
    cols = torch.arange(width, device=x.device, dtype=torch.float32)[None, :]
    for i in range(batch):
        if integer(0, 2) == 0:  # a yarn: 1-4 % of the tile thick, a fifth to all of it long
            thickness = max(1, round(uniform(0.01, 0.04) * height))
            length = round(uniform(0.2, 1.0) * width)
            across, along = integer(0, height - thickness + 1), integer(0, width - length + 1)
            mask = torch.zeros(height, width, device=x.device)
            mask[across : across + thickness, along : along + length] = 1
            if integer(0, 2):
                mask = mask.T.contiguous() if height == width else mask  # vertical (square tiles)
        else:  # a blob: an ellipse of 1-8 % of the tile across
            cy, cx = uniform(0, height), uniform(0, width)
            ry, rx = uniform(0.01, 0.08) * height, uniform(0.01, 0.08) * width
            mask = ((((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2) <= 1).float()
        if integer(0, 3) == 0:  # misweave: the fabric itself, shifted
            content = torch.roll(x[i], shifts=(integer(2, 9), integer(2, 9)), dims=(1, 2))
        else:
            content = (x[i] * uniform(0.5, 1.5) + uniform(-0.15, 0.15)).clamp(0, 1)
        out[i] = x[i] * (1 - mask) + content * mask
    return out
