"""Distillation loss: how far the student's features point from the teacher's."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def cosine_distance_maps(teacher: list[torch.Tensor], student: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per scale, `1 - cos` over channels at every position: (B, 1, h, w) maps in [0, 2].

    0.5 * ||t/|t| - s/|s|||^2 (the fabric paper's form) is the same quantity.
    """
    return [1 - F.cosine_similarity(t, s, dim=1).unsqueeze(1) for t, s in zip(teacher, student)]


def distillation_loss(teacher: list[torch.Tensor], student: list[torch.Tensor], hard_fraction: float = 1.0) -> torch.Tensor:
    """Mean over positions, then mean over scales, of the per-position cosine distance.

    Only the per-position form is used (not RD's extra whole-map cosine): it is the one the
    anomaly map is made of, so training minimises exactly what inference measures.

    `hard_fraction` < 1 averages only that share of positions per scale (over the whole batch),
    the worst reproduced: an image's score is its map's maximum, so the rare hard normal
    positions (a slub-like irregularity, a selvedge) decide false alarms, while the plain mean
    spends the gradient on the texture the student already reproduces.
    """
    maps = cosine_distance_maps([t.detach() for t in teacher], student)
    if hard_fraction >= 1:
        return torch.stack([m.mean() for m in maps]).mean()
    hardest = [m.flatten().topk(max(1, math.ceil(hard_fraction * m.numel()))).values.mean() for m in maps]
    return torch.stack(hardest).mean()
