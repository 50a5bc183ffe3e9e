"""Distillation loss: how far the student's features point from the teacher's."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_distance_maps(teacher: list[torch.Tensor], student: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per scale, `1 - cos` over channels at every position: (B, 1, h, w) maps in [0, 2].

    0.5 * ||t/|t| - s/|s|||^2 (the fabric paper's form) is the same quantity.
    """
    return [1 - F.cosine_similarity(t, s, dim=1).unsqueeze(1) for t, s in zip(teacher, student)]


def distillation_loss(teacher: list[torch.Tensor], student: list[torch.Tensor]) -> torch.Tensor:
    """Mean over positions, then mean over scales, of the per-position cosine distance.

    Only the per-position form is used (not RD's extra whole-map cosine): it is the one the
    anomaly map is made of, so training minimises exactly what inference measures.
    """
    maps = cosine_distance_maps([t.detach() for t in teacher], student)
    return torch.stack([m.mean() for m in maps]).mean()
