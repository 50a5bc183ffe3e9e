"""Datasets and images: the folder layouts fabricad reads, and image decoding. Torch-free: the
training side's `ImageDataset` is `fabricad.training.dataset`."""

from fabricad.data.formats import FORMATS, load_dataset
from fabricad.data.images import decode_image, read_image, to_rgb_uint8
from fabricad.data.samples import DatasetSplit, Sample

__all__ = [
    "FORMATS",
    "DatasetSplit",
    "Sample",
    "decode_image",
    "load_dataset",
    "read_image",
    "to_rgb_uint8",
]
