"""PatchCore-style baseline (Roth et al., CVPR 2022): the yardstick the RD default must beat.

Same teacher, same split: mid-level teacher features (strides 8 and 16) are locally averaged,
brought to stride 8 and concatenated into patch embeddings; a greedy k-center coreset of the
training patches is the memory bank; a patch's anomaly is its distance to the nearest bank entry.
The map gets the same upsampling and Gaussian blur as the RD map, and with `roi_margin` the same
fabric ROI, so the two differ only in how normality is modelled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from fabricad.backbones import TeacherEncoder, pick_layers
from fabricad.config import TeacherConfig
from fabricad.models.anomaly_map import GaussianBlur
from fabricad.models.base import fabric_keep


def greedy_coreset(
    features: torch.Tensor,
    ratio: float,
    projection_dim: int = 64,
    max_candidates: int = 50_000,
    max_size: int = 10_000,
    seed: int = 0,
) -> torch.Tensor:
    """Indices of a k-center greedy coreset keeping `ratio` of the patches (at most `max_size`).

    To stay affordable on a 2-core PC the greedy search runs over at most `max_candidates`
    randomly drawn patches, in a random projection to `projection_dim` dimensions (as PatchCore
    does); with AITEX's 200k training patches that is 40 s instead of 12 minutes.
    """
    generator = torch.Generator().manual_seed(seed)
    count = max(1, min(int(len(features) * ratio), max_size))
    candidates = torch.randperm(len(features), generator=generator)[:max_candidates]
    pool = features[candidates]
    if pool.shape[1] > projection_dim:
        projection = torch.randn(pool.shape[1], projection_dim, generator=generator) / projection_dim**0.5
        pool = pool @ projection
    count = min(count, len(pool))
    # Squared distances through one matrix-vector product per pick: much cheaper than cdist.
    norms = (pool * pool).sum(dim=1)
    selected = [int(torch.randint(len(pool), (1,), generator=generator))]
    distance = norms - 2 * pool @ pool[selected[0]] + norms[selected[0]]
    for _ in range(count - 1):
        index = int(torch.argmax(distance))
        selected.append(index)
        distance = torch.minimum(distance, norms - 2 * pool @ pool[index] + norms[index])
    return candidates[torch.tensor(selected)]


class PatchCore(nn.Module):
    def __init__(self, teacher: TeacherConfig, coreset_ratio: float = 0.1, sigma: float = 4.0,
                 roi_margin: int | None = None, roi_scale: float = 1.0):
        super().__init__()
        self.roi_margin = roi_margin
        """None: no fabric ROI; else the RD model's `model.fabric_roi` with this margin."""
        self.roi_scale = roi_scale
        """network pixels per source pixel (magnified tiles), as the RD model's `roi_scale`"""
        layers = pick_layers(teacher.name, (8, 16))
        self.teacher = TeacherEncoder(teacher, layers)
        self.coreset_ratio = coreset_ratio
        self.blur = GaussianBlur(sigma) if sigma > 0 else nn.Identity()
        self.register_buffer("memory", torch.empty(0))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) patch embeddings at stride 8."""
        fine, coarse = self.teacher(x)
        fine = F.avg_pool2d(fine, 3, 1, 1)
        coarse = F.interpolate(F.avg_pool2d(coarse, 3, 1, 1), size=fine.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([fine, coarse], dim=1)

    @torch.no_grad()
    def fit(self, batches, progress: bool = True) -> None:
        patches = []
        for batch in tqdm(batches, desc="patchcore memory", unit="batch", disable=not progress):
            e = self.embed(batch)
            patches.append(e.permute(0, 2, 3, 1).reshape(-1, e.shape[1]))
        bank = torch.cat(patches)
        self.memory = bank[greedy_coreset(bank, self.coreset_ratio)].contiguous()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embed(x)
        b, c, h, w = e.shape
        flat = e.permute(0, 2, 3, 1).reshape(-1, c)
        nearest = torch.cat([torch.cdist(chunk, self.memory).min(dim=1).values for chunk in flat.split(4096)])
        amap = nearest.view(b, 1, h, w)
        amap = self.blur(F.interpolate(amap, size=x.shape[-2:], mode="bilinear", align_corners=False))
        if self.roi_margin is not None:
            amap = amap * fabric_keep(x, self.roi_margin, self.roi_scale)
        return amap, amap.amax(dim=(1, 2, 3))
