"""The frozen teacher: any timm backbone as a multi-scale feature extractor.

The teacher normalises its own input with the statistics its weights were trained with
(`pretrained_cfg`: the TF-trained EfficientNet-Lites expect [-1, 1], not ImageNet mean/std), so
callers always pass RGB in [0, 1] and the normalisation travels inside an exported graph.
"""

from __future__ import annotations

import hashlib

import timm
import torch
from torch import nn

from fabricad.backbones.teacher_runtime import OnnxTeacher, choose_runtime
from fabricad.backbones.weights import resolve_weights
from fabricad.config import TeacherConfig
from fabricad.errors import ConfigError, WeightsError, did_you_mean


def check_known(name: str) -> None:
    """A teacher name timm does not know is a typo or a model of another library: say so, with
    the closest names timm has, before any model is built."""
    if not timm.is_model(name):
        hint = did_you_mean(name, timm.list_models()) or " (timm.list_models() lists them)"
        raise ConfigError(f"unknown teacher {name!r}: not a timm model{hint}")


def feature_strides(name: str) -> list[int]:
    """Stride of each feature stage timm exposes for `name` (index = `out_indices` value)."""
    check_known(name)
    probe = timm.create_model(name, pretrained=False, features_only=True)
    return list(probe.feature_info.reduction())


def pick_layers(name: str, strides: tuple[int, ...]) -> list[int]:
    """Deepest stage index at each wanted stride (e.g. 4, 8, 16)."""
    available = feature_strides(name)
    layers = []
    for stride in strides:
        matches = [i for i, s in enumerate(available) if s == stride]
        if not matches:
            raise ConfigError(f"teacher {name!r} has no stage at stride {stride} (strides: {available})")
        layers.append(matches[-1])
    return layers


def state_hash(module: nn.Module) -> str:
    """Identity of a set of weights: sha256 over names, shapes and values, in key order."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class TeacherEncoder(nn.Module):
    """Frozen timm backbone returning the feature maps at `layers`."""

    def __init__(self, config: TeacherConfig, layers: list[int]):
        super().__init__()
        check_known(config.name)
        self.name = config.name
        self.body = timm.create_model(config.name, pretrained=False, features_only=True, out_indices=layers)
        loaded = resolve_weights(config.name, config.weights)
        if loaded.state_dict is not None:
            self._load(loaded.state_dict)
        self.weights_source = loaded.source
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.strides: list[int] = list(self.body.feature_info.reduction())
        cfg = timm.get_pretrained_cfg(config.name)
        mean = cfg.mean if cfg is not None else (0.485, 0.456, 0.406)
        std = cfg.std if cfg is not None else (0.229, 0.224, 0.225)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()
        self.weights_hash = state_hash(self.body)
        self.runtime: OnnxTeacher | None = None
        """Set by `use_runtime`; None runs in PyTorch."""

    def use_runtime(self, requested: str, device: torch.device) -> str:
        """Run in ONNX Runtime or PyTorch from now on (`train.teacher_runtime`); returns which."""
        chosen = choose_runtime(requested, device)
        self.runtime = OnnxTeacher() if chosen == "onnxruntime" else None
        return chosen

    def _load(self, state: dict[str, torch.Tensor]) -> None:
        # Full-classifier state dicts carry head tensors the feature extractor lacks; those are
        # the only keys allowed to be left over. A missing key means the weights do not fit.
        own = self.body.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise WeightsError(
                f"weights do not fit teacher {self.name!r}: {len(missing)} tensors missing, e.g. {missing[:3]}"
            )
        bad = [k for k in own if state[k].shape != own[k].shape]
        if bad:
            raise WeightsError(f"weights do not fit teacher {self.name!r}: wrong shape for {bad[:3]}")
        self.body.load_state_dict({k: state[k] for k in own})

    def train(self, mode: bool = True) -> TeacherEncoder:
        # Frozen means frozen BatchNorm statistics too, whatever the parent module's mode.
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        # Tracing (export) always takes the PyTorch path, so the runtime never ends up in a graph;
        # the session is float32, so other precisions stay in PyTorch too.
        if (self.runtime is not None and x.device.type == "cpu" and x.dtype == torch.float32
                and not torch.jit.is_tracing()):
            return self.runtime(self.body, x)
        return self.body(x)
