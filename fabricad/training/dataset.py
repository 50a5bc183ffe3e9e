"""Samples → network-ready tensors (RGB float in [0, 1], resized to the configured size)."""

from __future__ import annotations

import math
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from fabricad.data.alignment import shear
from fabricad.data.images import resize
from fabricad.data.samples import Sample
from fabricad.data.tiling import (
    context_in_source,
    cut_window,
    padded_window,
    reflect_pad,
)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def training_augmentation(seed: int | None = None, flip: bool = False) -> A.Compose:
    """Light, label-preserving changes: any fabric is still normal a little out of focus (the
    fabric paper's Gaussian-blur augmentation) or lit a little differently; mirroring only when
    asked (`data.flip`). Nothing that could create a defect-like pattern. Albumentations keeps
    its own RNG, hence the explicit seed."""
    mirrors = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)] if flip else []
    return A.Compose(
        [
            *mirrors,
            A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(0.1, 0.8), p=0.3),
            A.RandomBrightnessContrast(brightness_limit=0.05, contrast_limit=0.05, p=0.3),
        ],
        seed=seed,
    )


def random_window(length: int, size: int) -> int:
    """Start of a `size`-long window inside `length`: starts are uniform over [-(size-1),
    length-1], clamped into the image, so no pixel is seen less often than the middle of the
    scan (those within a window of either end up to twice as often). Uniform starts over
    [0, length-size] would almost never show the first and last pixels — and a scan's ends,
    selvedge and machinery, are where false alarms come from. Torch's RNG, so that
    `seed_everything` and DataLoader workers keep runs reproducible."""
    start = int(torch.randint(-(size - 1), length, ()).item())
    return min(max(start, 0), length - size)


class ImageDataset(Dataset):
    """Resized images of `samples`; decoded images are cached since training sets are small
    and wide scans are cut into many tiles of the same file.

    `random_tiles`: a sample that is a tile of a larger image is cut at a random offset of its
    source image each time, instead of at its fixed grid position — the same number of samples
    per epoch, but the student sees the texture at every phase rather than the same few hundred
    crops (and their reflect-padded borders) fifty times over.

    `skew` (degrees): half the training images come back sheared by an angle drawn uniformly
    within ±skew; a tile is sheared together with the fabric beside it in its source image, its
    context included, so nothing reflected enters it except at the scan's ends.

    `context` (px at the network's size, `model.tile_context`): each image comes padded by that
    much on every side, a tile with its real neighbours in its source image, a whole image
    reflected."""

    def __init__(self, samples: list[Sample], size: tuple[int, int], augment: bool = False, seed: int | None = None,
                 flip: bool = False, random_tiles: bool = False, skew: float = 0.0, context: int = 0):
        self.samples = samples
        self.size = tuple(size)
        self.augment = training_augmentation(seed, flip) if augment else None
        self.random_tiles = random_tiles
        self.skew = skew
        self.context = context
        self._cache: dict[int, np.ndarray] = {}
        self._sources: dict[Path, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, index: int) -> np.ndarray:
        """The sample resized; a tile is cut from its source image, decoded once per source.
        A tile at the network's size is a view of that source: decoding the source per tile
        kept one whole decoded scan alive per cached tile (16 per AITEX scan: 2.9 GB for
        fabric 02's test tiles instead of 0.2 GB)."""
        if index not in self._cache:
            sample = self.samples[index]
            if sample.crop is None:
                image = reflect_pad(resize(sample.load(), self.size), self.context)
            else:
                image = cut_window(self.source(sample), sample.crop, self.size, self.context)
            self._cache[index] = image
        return self._cache[index]

    def source(self, sample: Sample) -> np.ndarray:
        if sample.path not in self._sources:
            self._sources[sample.path] = sample.load_source()
        return self._sources[sample.path]

    def tile(self, sample: Sample, k: float = 0.0) -> np.ndarray:
        """The sample's tile of its source image (with its `context`), at its grid position or
        (`random_tiles`) a random one, sheared by `k`: cut from a window wider by the rows'
        largest shift on either side, so the shear fills the tile from the scan beside it."""
        source = self.source(sample)
        x, y, width, height = sample.crop
        if self.random_tiles:
            x, y = random_window(source.shape[1], width), random_window(source.shape[0], height)
        if k == 0:
            return cut_window(source, (x, y, width, height), self.size, self.context)
        cx, cy = context_in_source(self.context, width, height, self.size)
        margin = math.ceil(abs(k) * (height + 2 * cy) / 2) + 1
        window = padded_window(source, x - cx - margin, y - cy, x + width + cx + margin, y + height + cy)
        return resize(shear(window, k)[:, margin : margin + width + 2 * cx],
                      (self.size[0] + 2 * self.context, self.size[1] + 2 * self.context))

    def random_skew(self) -> float:
        """Shear factor: 0 half the time, else tan of an angle uniform in ±skew (torch's RNG)."""
        if not self.skew or torch.rand(()) < 0.5:
            return 0.0
        return math.tan(math.radians(float(torch.empty(()).uniform_(-self.skew, self.skew))))

    def __getitem__(self, index: int) -> torch.Tensor:
        sample = self.samples[index]
        k = self.random_skew()
        if sample.crop is not None and (self.random_tiles or k):
            image = self.tile(sample, k)
        else:
            image = shear(self.image(index), k) if k else self.image(index)
        if self.augment is not None:
            image = self.augment(image=image)["image"]
        return to_tensor(image)
