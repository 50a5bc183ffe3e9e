"""TF-style 'same' padding made constant for one input size, for ONNX graphs."""

from __future__ import annotations

import copy

import torch
from torch import nn


def freeze_same_padding(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of `model` whose TF-style 'same' convolutions pad by constants, for one input size.

    timm's `Conv2dSame` (EfficientNet-Lite's strided convolutions) computes its padding from the
    input's shape at run time; traced, that is a Shape/Gather/Ceil/Pad chain in front of each such
    convolution, and ONNX Runtime must leave its blocked memory layout around every one of those
    Pads (a third of a Lite1 tile's non-convolution time). The bundle's input size is fixed, so
    the padding is known: timm's own export-friendly `Conv2dSameExport` with its padding set from
    a probe forward gives the same numbers with a constant Pad that ONNX Runtime folds into the Conv.
    """
    from timm.layers.conv2d_same import Conv2dSame, Conv2dSameExport
    from timm.layers.padding import pad_same_arg

    frozen = copy.deepcopy(model)
    sizes: dict[str, tuple[int, int]] = {}

    def record(name: str):
        def hook(_, args) -> None:  # a pre-hook that returned a value would replace the input
            sizes[name] = tuple(args[0].shape[-2:])
        return hook

    hooks = [module.register_forward_pre_hook(record(name)) for name, module in frozen.named_modules()
             if isinstance(module, Conv2dSame)]
    with torch.no_grad():
        frozen(example)
    for hook in hooks:
        hook.remove()
    for name, size in sizes.items():
        parent_name, _, child = name.rpartition(".")
        parent = frozen.get_submodule(parent_name) if parent_name else frozen
        same: Conv2dSame = getattr(parent, child)
        static = Conv2dSameExport(same.in_channels, same.out_channels, same.kernel_size, same.stride,
                                  dilation=same.dilation, groups=same.groups, bias=same.bias is not None)
        static.load_state_dict(same.state_dict())
        static.pad = nn.ZeroPad2d(pad_same_arg(list(size), list(same.kernel_size), list(same.stride), list(same.dilation)))
        static.pad_input_size = size
        setattr(parent, child, static)
    return frozen
