"""Labelled examples from datasets that carry defect types: AITEX's defect codes in its file
names (named as in its paper), MVTec-style `test/<type>/` folders with `ground_truth` masks. One
example per defect: a mask's connected parts, closed over small gaps so that one nep's specks
or one broken end's dashes are one defect, as an operator would see them."""

from __future__ import annotations

import cv2
import numpy as np
from tqdm import tqdm

from fabricad.data.images import read_mask
from fabricad.data.samples import DatasetSplit
from fabricad.defect_types.classifier import Example
from fabricad.defect_types.descriptors import describe

AITEX_TYPES = {
    "002": "broken_end", "006": "broken_yarn", "010": "broken_pick", "016": "weft_curling", "019": "fuzzyball",
    "022": "cut_selvage", "023": "crease", "025": "warp_ball", "027": "knots", "029": "contamination",
    "030": "nep", "036": "weft_crack",
}
"""AITEX's defect codes, as named by Silvestre-Blanes et al. (2019)"""
JOIN_PX = 9
MIN_PIXELS = 4


def mask_boxes(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The boxes (x, y, width, height) of a mask's defects: parts closer than `JOIN_PX` are one."""
    closed = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((JOIN_PX, JOIN_PX), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    boxes = []
    for k in range(1, count):
        x, y, w, h, _ = (int(v) for v in stats[k])
        if int((mask[y:y + h, x:x + w] & (labels[y:y + h, x:x + w] == k)).sum()) >= MIN_PIXELS:
            boxes.append((x, y, w, h))
    return boxes


def type_name(defect_type: str) -> str:
    return AITEX_TYPES.get(defect_type, defect_type)


def dataset_examples(split: DatasetSplit, progress: bool = True) -> list[Example]:
    """One example per defect of every defective test image of `split` that has a mask."""
    images: dict = {}
    for s in split.test:
        if s.defect_type != "good" and s.mask_paths:
            images.setdefault(s.path, s)
    examples = []
    for path, sample in tqdm(sorted(images.items()), desc=f"defect types {split.name}", unit="image",
                             disable=not progress, leave=False):
        image = sample.load_source()
        mask = read_mask(sample.mask_paths, image.shape[:2])
        for box in mask_boxes(mask):
            examples.append(Example(features=describe(image, box).tolist(), label=type_name(sample.defect_type),
                                    source=split.name, group=path.name))
    return examples
