from fabricad.data.formats import FORMATS, load_dataset
from fabricad.data.images import decode_image, read_image, to_rgb_uint8
from fabricad.data.samples import DatasetSplit, Sample
from fabricad.data.torch_dataset import ImageDataset

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
