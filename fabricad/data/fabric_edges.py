"""What lies beyond the fabric's edge in a scan: found per scan, so the anomaly map can ignore it.

Why: a line-scan camera sees across the whole web and often past its edge, onto the machine bed
(a striped, reflective table, rollers). The bed is not fabric, is never the same twice, and a
one-class model lights it from edge to edge: on AITEX it made most of the false alarms and most
of the normal pixels that outscored real defects (BENCHMARKS.md, "the machine bed beyond the
fabric edge"). The fabric ROI in the model (`fabricad.models.base.flat_saturated`) blanks only a
flat, saturated background (a backlit white); a bed has texture, so it needs its own rule.

The rule, per scan, on column profiles taken over the scan's full height (so a defect a few rows
high cannot move them): from each side, the sharpest full-height edge within the outer half of
the width; what lies between it and the side is background when the edge is abrupt and the strip
does not look like the scan's fabric — its level at least 20 % brighter or darker, or less than
half of the fabric's texture across rows (the bed's stripes run along the rows; yarns cross
every row). Only scans at least twice as wide as tall are searched: a strip across the web is
where a web's edges appear; a square frame of fabric is left as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from fabricad.data.images import to_rgb_uint8
from fabricad.errors import ImageReadError

FLAT_WINDOW = 9
"""Side of the window in which background shows no texture: a few yarns of any fabric we have
seen. The model's fabric ROI (`fabricad.models.base.flat_saturated`) and `only_background` share
this and the three levels below, so the two never disagree on what background is."""
FLAT_RANGE = 3
"""Background's grey range within a `FLAT_WINDOW` is under this many levels (of 255)."""
DARK, BRIGHT = 5, 250
"""Background is darker than `DARK` or brighter than `BRIGHT` (of 255): saturated."""

WINDOW = 32
"""Columns averaged on each side of a candidate edge: a few weave repeats."""
SCAN_ASPECT = 2.0
"""Only images at least this many times wider than tall are searched for edges."""


@dataclass(frozen=True)
class EdgeRule:
    """When a strip between a side and an edge is background (differences of log profiles)."""

    step: float = 0.2
    """Smallest change of a profile across the edge (about 22 %): an edge, not a lighting slope."""
    level: float = math.log(1.2)
    """The strip's mean grey level differs from the fabric's by at least 20 %, or …"""
    texture: float = math.log(2.0)
    """… its texture across rows is less than half the fabric's."""


def column_profiles(gray: np.ndarray) -> np.ndarray:
    """(3, W) log profiles over the full height of a uint8 grey image: grey level, texture across
    rows (mean |∂x|), texture along columns (mean |∂y|). OpenCV's saturating absdiff and row
    reduction keep it to about a millisecond for a 4096×256 scan (NumPy's float diffs: 16 ms)."""
    gray = np.ascontiguousarray(gray)
    level = cv2.reduce(gray, 0, cv2.REDUCE_AVG, dtype=cv2.CV_32F)[0]
    across = np.zeros_like(level)
    across[:-1] = cv2.reduce(cv2.absdiff(gray[:, 1:], gray[:, :-1]), 0, cv2.REDUCE_AVG, dtype=cv2.CV_32F)[0]
    along = np.zeros_like(level)
    if gray.shape[0] > 1:
        along = cv2.reduce(cv2.absdiff(gray[1:], gray[:-1]), 0, cv2.REDUCE_AVG, dtype=cv2.CV_32F)[0]
    return np.log(np.stack([level, across, along]) + 1.0)


def _strip_width(profiles: np.ndarray, fabric: np.ndarray, rule: EdgeRule) -> int:
    """Width of the background strip at the start of `profiles` (0: none)."""
    width = profiles.shape[1]
    cuts = np.arange(WINDOW, width // 2)
    if cuts.size == 0:
        return 0
    sums = np.cumsum(np.pad(profiles, ((0, 0), (1, 0))), axis=1)
    before = (sums[:, cuts] - sums[:, cuts - WINDOW]) / WINDOW
    after = (sums[:, cuts + WINDOW] - sums[:, cuts]) / WINDOW
    steps = np.abs(before - after).max(axis=0)
    best = int(np.argmax(steps))
    cut = int(cuts[best])
    strip = profiles[:, :cut].mean(axis=1) - fabric
    unlike_fabric = abs(strip[0]) >= rule.level or strip[1] <= -rule.texture
    return cut if steps[best] >= rule.step and unlike_fabric else 0


def background_columns(image: np.ndarray, rule: EdgeRule = EdgeRule()) -> np.ndarray:
    """(W,) bool: the columns of a scan (grey, RGB or RGBA; 8 or 16 bit) beyond its fabric
    edges. All False for an image less than `SCAN_ASPECT` times wider than tall."""
    height, width = image.shape[:2]
    background = np.zeros(width, bool)
    if width < SCAN_ASPECT * height or width < 4 * WINDOW:
        return background
    profiles = column_profiles(gray_uint8(image))
    fabric = np.median(profiles, axis=1)  # the fabric covers most of a scan's width
    left = _strip_width(profiles, fabric, rule)
    right = _strip_width(profiles[:, ::-1], fabric, rule)
    background[:left] = True
    background[width - right :] = True
    return background


def gray_uint8(image: np.ndarray) -> np.ndarray:
    """An image of any layout (grey, RGB, RGBA; 8 or 16 bit) as one uint8 grey channel."""
    if image.ndim == 2 and image.dtype == np.uint8:
        return image
    return cv2.cvtColor(to_rgb_uint8(np.ascontiguousarray(image), order="rgb"), cv2.COLOR_RGB2GRAY)


def only_background(image: np.ndarray) -> bool:
    """Whether a frame shows nothing but flat, saturated background (a web break, the bare
    scanner table): every pixel near white or black with no texture around it — the frame the
    fabric ROI would blank entirely. The engine asks it of models whose ROI is off (their
    training images never showed a background), so that such a frame is still reported as no
    fabric in view rather than scored as fabric."""
    gray = gray_uint8(image)
    if not np.all((gray > BRIGHT) | (gray < DARK)):
        return False
    kernel = np.ones((FLAT_WINDOW, FLAT_WINDOW), np.uint8)
    return bool(np.all(cv2.dilate(gray, kernel) - cv2.erode(gray, kernel) < FLAT_RANGE))


@lru_cache(maxsize=256)
def _scan_background(path: Path, rule: EdgeRule) -> np.ndarray:
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt or unsupported format)")
    return background_columns(gray, rule)


def keep_columns(samples, width: int, rule: EdgeRule = EdgeRule()) -> np.ndarray:
    """(N, width) float32, per sample (a tile or a whole image): 1 on the fabric's columns, 0 on
    the background beyond its scan's edges, at a map `width`. A tile's columns come from its
    whole source scan, decoded once per scan."""
    keep = np.ones((len(samples), width), np.float32)
    for i, sample in enumerate(samples):
        background = _scan_background(Path(sample.path), rule)
        if sample.crop is not None:
            x, _, w, _ = sample.crop
            background = background[x : x + w]
        if background.any():
            keep[i] = cv2.resize((~background).astype(np.float32)[None, :], (width, 1), interpolation=cv2.INTER_NEAREST)[0]
    return keep
