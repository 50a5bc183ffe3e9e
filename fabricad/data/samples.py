"""The unit every dataset format is reduced to: a `Sample` (one image, or one tile of one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fabricad.data.images import image_size, read_image, read_mask


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int = 0
    """0 normal, 1 defective."""
    mask_paths: tuple[Path, ...] = ()
    crop: tuple[int, int, int, int] | None = None
    """(x, y, width, height) for a tile of a larger image; None for the whole image."""
    defect_type: str = "good"
    group: str = ""
    """The source image a tile belongs to (full-image scores take the max over a group)."""
    image_label: int | None = None
    """The label of the whole source image where the dataset states one (AITEX: the file's
    defect code). A full image is then scored against it, as METHOD.md defines image AUROC,
    even where its mask marks no pixel; None: defective if any of its tiles is."""

    @property
    def full_image_label(self) -> int:
        return self.label if self.image_label is None else max(self.image_label, self.label)

    def load_source(self) -> np.ndarray:
        """The whole image this sample is cut from."""
        return read_image(self.path)

    def load(self) -> np.ndarray:
        image = self.load_source()
        if self.crop is None:
            return image
        x, y, w, h = self.crop
        return image[y : y + h, x : x + w]

    def load_mask(self) -> np.ndarray:
        """Ground-truth mask of this sample (bool, same size as `load()`)."""
        full = read_mask(self.mask_paths, image_size(self.path))
        if self.crop is None:
            return full
        x, y, w, h = self.crop
        return full[y : y + h, x : x + w]


@dataclass
class DatasetSplit:
    """Train and test samples of one category, whatever the on-disk format."""

    name: str
    format: str
    train: list[Sample]
    test: list[Sample] = field(default_factory=list)
