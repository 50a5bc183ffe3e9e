"""What every distillation model shares: a frozen teacher, trainable parts, one anomaly map."""

from __future__ import annotations

import torch
from torch import nn

from fabricad.backbones import TeacherEncoder
from fabricad.config import ModelConfig
from fabricad.errors import CheckpointError
from fabricad.models.anomaly_map import AnomalyMapGenerator

Features = list[torch.Tensor]


class DistillationModel(nn.Module):
    """Teacher + student. `distill` gives the feature pairs training compares; `forward` is
    inference, image batch (RGB in [0, 1]) → (anomaly map (B,1,H,W), score (B,)), which is
    exactly the graph that gets exported."""

    def __init__(self, teacher: TeacherEncoder, config: ModelConfig):
        super().__init__()
        self.config = config
        self.teacher = teacher
        self.anomaly_map = AnomalyMapGenerator(config.map_mode, config.blur_sigma)

    def targets(self, x: torch.Tensor) -> Features:
        """Teacher features the student must reproduce."""
        return self.teacher(x)

    def student(self, targets: Features) -> Features:
        raise NotImplementedError

    def distill(self, x: torch.Tensor) -> tuple[Features, Features]:
        with torch.no_grad():
            targets = self.targets(x)
        return targets, self.student(targets)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        teacher, student = self.distill(x)
        return self.anomaly_map(teacher, student, (x.shape[-2], x.shape[-1]))

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
