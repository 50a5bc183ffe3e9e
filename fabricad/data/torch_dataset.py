"""Samples → network-ready tensors (RGB float in [0, 1], resized to the configured size)."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from fabricad.data.samples import Sample


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    shrinking = image.shape[0] >= height and image.shape[1] >= width
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


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


class ImageDataset(Dataset):
    """Resized images of `samples`; decoded images are cached since training sets are small
    and wide scans are cut into many tiles of the same file."""

    def __init__(self, samples: list[Sample], size: tuple[int, int], augment: bool = False, seed: int | None = None,
                 flip: bool = False):
        self.samples = samples
        self.size = tuple(size)
        self.augment = training_augmentation(seed, flip) if augment else None
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, index: int) -> np.ndarray:
        if index not in self._cache:
            self._cache[index] = resize(self.samples[index].load(), self.size)
        return self._cache[index]

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.image(index)
        if self.augment is not None:
            image = self.augment(image=image)["image"]
        return to_tensor(image)
