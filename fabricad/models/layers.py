"""Building blocks shared by the model families (all plain convs: they export to ONNX)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def steps_between(fine: int, coarse: int) -> int:
    """Number of 2x resampling steps between two strides (which must differ by a power of two)."""
    ratio = coarse // fine
    if ratio < 1 or coarse % fine or ratio & (ratio - 1):
        raise ValueError(f"strides {fine} and {coarse} are not a power of two apart")
    return int(math.log2(ratio))


class BasicBlock(nn.Module):
    """ResNet basic block; with stride 2 it halves the resolution."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class UpBlock(nn.Module):
    """2x upsampling with a 2x2 transposed conv, as in the reversed ResNet student."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.up(x)), inplace=True)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(w), inplace=True)))


class SSPCAB(nn.Module):
    """Self-supervised predictive convolutional attentive block (Ristea et al., CVPR 2022).

    Four convolutions look at the corners of a receptive field whose centre is masked out, so
    each position is predicted from its surroundings only; squeeze-excitation then reweights
    the channels. Output has the input's shape.
    """

    def __init__(self, channels: int, kernel: int = 1, dilation: int = 1, reduction: int = 8):
        super().__init__()
        self.pad = kernel + dilation
        self.border = kernel + 2 * dilation + 1
        self.corners = nn.ModuleList(nn.Conv2d(channels, channels, kernel) for _ in range(4))
        self.se = SqueezeExcite(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, b = self.pad, self.border
        x = F.pad(x, (p, p, p, p))
        out = (
            self.corners[0](x[:, :, :-b, :-b])
            + self.corners[1](x[:, :, b:, :-b])
            + self.corners[2](x[:, :, :-b, b:])
            + self.corners[3](x[:, :, b:, b:])
        )
        return self.se(F.relu(out))


class SpatialAttentionGate(nn.Module):
    """x * sigmoid(g(x)): a per-position gate learned by a small conv head."""

    def __init__(self, channels: int, hidden: int | None = None):
        super().__init__()
        if hidden is None:  # a single 1x1 conv gate
            self.score = nn.Conv2d(channels, 1, 1)
        else:
            self.score = nn.Sequential(
                nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.score(x))


class DecoderStage(nn.Module):
    """Upsample, optionally add a gated skip feature, refine with two basic blocks, predict."""

    def __init__(self, cin: int, cout: int, ups: int, target_channels: int, skip: nn.Module | None):
        super().__init__()
        self.up = nn.Sequential(*[UpBlock(cin if i == 0 else cout, cout) for i in range(ups)])
        first_in = cout if ups else cin
        self.skip = skip
        self.blocks = nn.Sequential(BasicBlock(first_in, cout), BasicBlock(cout, cout))
        # Linear head: EfficientNet features are signed, a ReLU output could not match them.
        self.head = nn.Conv2d(cout, target_channels, 1)

    def forward(
        self, x: torch.Tensor, skip_input: torch.Tensor | None, size: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.up(x)
        if size is not None and tuple(x.shape[-2:]) != tuple(size):
            # The embedding's stride can exceed what the input divides by (e.g. 96 px at stride
            # 64): strided convs round up, so upsampling overshoots; resample to the target.
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if self.skip is not None and skip_input is not None:
            x = x + self.skip(skip_input)
        x = self.blocks(x)
        return x, self.head(x)


class StudentDecoder(nn.Module):
    """Reversed-ResNet student: from the one-class embedding back up to every teacher scale.

    One stage per teacher scale, coarsest first, at width / 2^k channels (never below 32) like a
    ResNet-18 run backwards; 2x2 transposed convs upsample as often as the stride halves.
    `skip_channels[i]` (dbfad) feeds the teacher feature of that channel count and stride
    `skip_strides[i]` into the stage that predicts scale i, through conv-BN-ReLU, pooling and a
    1x1 attention gate.
    """

    def __init__(
        self,
        embed_channels: int,
        embed_stride: int,
        target_channels: list[int],
        target_strides: list[int],
        width: int,
        skip_channels: list[int | None] | None = None,
        skip_strides: list[int | None] | None = None,
    ):
        super().__init__()
        count = len(target_channels)
        skip_channels = skip_channels or [None] * count
        stages = []
        cin, stride = embed_channels, embed_stride
        for k, index in enumerate(reversed(range(count))):
            cout = max(width >> k, 32)
            ups = steps_between(target_strides[index], stride)
            skip = None
            if skip_channels[index] is not None:
                pool = 2 ** steps_between(skip_strides[index], target_strides[index])
                joined = cout if ups else cin
                skip = nn.Sequential(
                    conv_bn_relu(skip_channels[index], joined),
                    nn.AvgPool2d(pool) if pool > 1 else nn.Identity(),
                    SpatialAttentionGate(joined),
                )
            stages.append(DecoderStage(cin, cout, ups, target_channels[index], skip))
            cin, stride = cout, target_strides[index]
        self.stages = nn.ModuleList(stages)

    def forward(
        self,
        z: torch.Tensor,
        skip_inputs: list[torch.Tensor | None] | None = None,
        sizes: list[tuple[int, int]] | None = None,
    ) -> list[torch.Tensor]:
        """Predictions for every teacher scale, finest first (the teacher's order); `sizes`
        are the teacher's feature sizes, which the predictions are made to match."""
        count = len(self.stages)
        skip_inputs = skip_inputs or [None] * count
        sizes = sizes or [None] * count
        outputs = []
        x = z
        for k, stage in enumerate(self.stages):
            x, prediction = stage(x, skip_inputs[count - 1 - k], sizes[count - 1 - k])
            outputs.append(prediction)
        return outputs[::-1]
