"""The fabric variant of reverse distillation (DBFAD, Textile Research Journal 2024).

Differences from `rd`, all aimed at fabrics' high-level texture cues and at speed:
- four teacher scales, the stem included (max-pooled to stride 4, like a ResNet's own stem);
- a bottleneck that sums 1x1-projected scales, then SSPCAB (predict each position from its
  masked neighbourhood) and a convolutional attention gate;
- a reversed ResNet-18 student, optionally fed the teacher's next-shallower scale through
  attention-gated skips (`skips=False` is the paper's domain-generalisation setting).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fabricad.backbones import TeacherEncoder
from fabricad.config import ModelConfig
from fabricad.models.base import DistillationModel, Features
from fabricad.models.layers import (
    SSPCAB,
    SpatialAttentionGate,
    StudentDecoder,
    conv_bn_relu,
    steps_between,
)

DEFAULT_STRIDES = (2, 4, 8, 16)
MIN_TARGET_STRIDE = 4


class AttentiveBottleneck(nn.Module):
    def __init__(self, channels: list[int], strides: list[int], width: int):
        super().__init__()
        coarsest = strides[-1]
        self.projections = nn.ModuleList(
            nn.Sequential(
                conv_bn_relu(ch, width, kernel=1),
                nn.AvgPool2d(2 ** steps_between(stride, coarsest)) if stride < coarsest else nn.Identity(),
            )
            for ch, stride in zip(channels, strides)
        )
        self.mix = nn.Sequential(conv_bn_relu(width, width, kernel=1), conv_bn_relu(width, width, kernel=1))
        self.down = conv_bn_relu(width, width, stride=2)
        self.sspcab = SSPCAB(width)
        self.gate = SpatialAttentionGate(width, hidden=max(width // 8, 8))
        self.stride = coarsest * 2

    def forward(self, features: Features) -> torch.Tensor:
        summed = self.projections[0](features[0])
        for project, f in zip(self.projections[1:], features[1:]):
            summed = summed + project(f)
        return self.gate(self.sspcab(self.down(self.mix(summed))))


class DBFAD(DistillationModel):
    def __init__(self, teacher: TeacherEncoder, config: ModelConfig):
        super().__init__(teacher, config)
        self.target_strides = [max(s, MIN_TARGET_STRIDE) for s in teacher.strides]
        channels = teacher.channels
        self.bottleneck = AttentiveBottleneck(channels, self.target_strides, config.width)
        skip_channels = skip_strides = None
        if config.skips:
            skip_channels = [None, *channels[:-1]]
            skip_strides = [None, *self.target_strides[:-1]]
        self.decoder = StudentDecoder(
            config.width,
            self.bottleneck.stride,
            channels,
            self.target_strides,
            config.width,
            skip_channels=skip_channels,
            skip_strides=skip_strides,
        )
        self.use_skips = config.skips

    def scale_strides(self) -> list[int]:
        return list(self.target_strides)

    def targets(self, x: torch.Tensor) -> Features:
        features = []
        for f, stride in zip(self.teacher(x), self.teacher.strides):
            while stride < MIN_TARGET_STRIDE:  # the stem: max-pool like a ResNet stem does
                f = F.max_pool2d(f, kernel_size=3, stride=2, padding=1)
                stride *= 2
            features.append(f)
        return features

    def student(self, targets: Features) -> Features:
        skip_inputs = [None, *targets[:-1]] if self.use_skips else None
        return self.decoder(self.bottleneck(targets), skip_inputs, sizes=[tuple(t.shape[-2:]) for t in targets])
