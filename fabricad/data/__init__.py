"""Datasets and images. `ImageDataset` (the torch side) is imported on first use, so that
readers of images alone — the service, the engine — do not load torch and albumentations."""

from fabricad.data.formats import FORMATS, load_dataset
from fabricad.data.images import decode_image, read_image, to_rgb_uint8
from fabricad.data.samples import DatasetSplit, Sample

__all__ = [
    "FORMATS",
    "DatasetSplit",
    "ImageDataset",
    "Sample",
    "decode_image",
    "load_dataset",
    "read_image",
    "to_rgb_uint8",
]


def __getattr__(name: str):
    if name == "ImageDataset":
        from fabricad.data.torch_dataset import ImageDataset

        return ImageDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
