"""Which torch device a command runs on: `auto`, `cpu`, `cuda`, `cuda:N`, `mps`, checked before any
work starts, so a typo or a missing GPU is one clear error rather than a failure minutes in."""

from __future__ import annotations

import re

import torch

from fabricad.errors import ConfigError

DEVICE_NAME = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")


def select_device(name: str) -> torch.device:
    if not DEVICE_NAME.fullmatch(name or ""):
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' requested but Apple's Metal backend is not available here (use cpu or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= max(torch.cuda.device_count(), 1):
        raise ConfigError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here (use train.device=cpu or auto)")
    return device
