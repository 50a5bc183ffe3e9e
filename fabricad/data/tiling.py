"""Cutting wide scans into tiles (the AITEX-256 rule, reused by inference on wide images)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fabricad.data.images import image_size, read_mask, resize

SMALLEST_INPUT = 64
"""The smallest side `network_size` gives a network input: at 64 px the stride-32 bottleneck
still sees a 2×2 grid."""


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets covering [0, length): every `stride`, plus a last tile aligned to the end
    when the length is not covered exactly (it then overlaps its neighbour)."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def tile_boxes(height: int, width: int, tile: int, stride: int | None = None) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) boxes covering a height x width image with tile x tile windows."""
    stride = stride or tile
    return [
        (x, y, min(tile, width), min(tile, height))
        for y in tile_starts(height, tile, stride)
        for x in tile_starts(width, tile, stride)
    ]


def tile_of(samples) -> list[int] | None:
    """[height, width] of the native tiles `samples` were cut into; None when they are whole images."""
    return next(([s.crop[3], s.crop[2]] for s in samples if s.crop is not None), None)


def native_size(samples, most: int = 64) -> tuple[int, int]:
    """(height, width) of `samples` at native scale: their tile's, or for whole images the median
    side of up to `most` of them (read from the file headers, evenly spread over the list)."""
    tile = tile_of(samples)
    if tile is not None:
        return tile[0], tile[1]
    sizes = np.array([image_size(s.path) for s in samples[:: max(1, -(-len(samples) // most))]])
    return int(np.median(sizes[:, 0])), int(np.median(sizes[:, 1]))


def network_size(configured: tuple[int, int], native: tuple[int, int]) -> tuple[int, int]:
    """`configured`, each side cut to the native side where that is smaller — rounded to the
    nearest multiple of 32 (the teacher's deepest stride), at least `SMALLEST_INPUT`."""
    return tuple(min(c, max(SMALLEST_INPUT, 32 * round(n / 32))) for c, n in zip(configured, native))


def magnification(tile: tuple[int, int] | list[int] | None, size: tuple[int, int]) -> float:
    """Network pixels per source pixel when native (height, width) tiles are resized to `size`;
    1 for datasets without a fixed tile (resized whole images have no single scale)."""
    if not tile:
        return 1.0
    return (size[0] / tile[0] + size[1] / tile[1]) / 2


def reflect_pad(image: np.ndarray, context: int) -> np.ndarray:
    """`image` padded by `context` px on every side by reflection (torch's "reflect")."""
    pad = [(context, context), (context, context)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode="reflect") if context else image


def cut_window(source: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int], context: int = 0) -> np.ndarray:
    """The `box` (x, y, width, height) of `source` resized to `size`, widened by `context`
    network px (scaled to source px) of its real neighbours on every side, so the result is
    `size` + 2·context. Reflected only where the window passes the source's own borders."""
    x, y, width, height = box
    if not context:
        return resize(source[y : y + height, x : x + width], size)
    cx, cy = context_in_source(context, width, height, size)
    window = padded_window(source, x - cx, y - cy, x + width + cx, y + height + cy)
    return resize(window, (size[0] + 2 * context, size[1] + 2 * context))


def context_in_source(context: int, width: int, height: int, size: tuple[int, int]) -> tuple[int, int]:
    """`context` network px as source px (x, y) for a `width`×`height` tile resized to `size`."""
    return round(context * width / size[1]), round(context * height / size[0])


def padded_window(source: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """`source[y0:y1, x0:x1]`, reflected only where the window passes the source's own borders."""
    h, w = source.shape[:2]
    window = source[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)]
    pad = [(max(-y0, 0), max(y1 - h, 0)), (max(-x0, 0), max(x1 - w, 0))] + [(0, 0)] * (source.ndim - 2)
    return np.pad(window, pad, mode="reflect") if any(a or b for a, b in pad) else window


MIXED_SIZES = 0.9
"""Whole images are of mixed sizes when fewer than this share of them have the most common size."""


def mixed_sizes(sizes: list[tuple[int, int]]) -> bool:
    """Whether (height, width) `sizes` differ enough that resizing each image to one network
    size would show the texture at a different scale and aspect in every image."""
    if not sizes:
        return False
    common = max(sizes.count(s) for s in set(sizes))
    return common < MIXED_SIZES * len(sizes)


def whole_image_tile(sizes: list[tuple[int, int]], configured: tuple[int, int]) -> int:
    """Side of the square native-scale tiles a folder of mixed-size images is cut into: the
    configured network side, less where one image in ten has a shorter side (so that nearly
    every tile is real texture at the camera's own scale), a multiple of 32, at least
    `SMALLEST_INPUT`."""
    shortest = float(np.percentile([min(h, w) for h, w in sizes], 10))
    return max(SMALLEST_INPUT, min(min(configured), 32 * int(shortest // 32)))


def tile_whole_images(samples, side: int) -> list:
    """`samples` (whole images) as the `side`-px tiles that cover each, labelled by their own
    mask where the image has one (else by the image's label), grouped by image so that its score
    is the maximum over its tiles. An image shorter than `side` gives tiles of its own height or
    width, which are resized to the network like any tile."""
    tiles = []
    for sample in samples:
        height, width = image_size(sample.path)
        mask = read_mask(sample.mask_paths, (height, width)) if sample.label and sample.mask_paths else None
        for box in tile_boxes(height, width, side):
            x, y, w, h = box
            label = int(mask[y : y + h, x : x + w].any()) if mask is not None else sample.label
            tiles.append(replace(sample, label=label, crop=box, defect_type=sample.defect_type if label else "good",
                                 group=sample.group or str(sample.path), image_label=sample.label))
    return tiles


def as_trained(samples, dataset_info: dict) -> list:
    """`samples` cut as training cut the model's images: whole images into the native tiles
    recorded in the checkpoint's `dataset_info` (`whole_images_tile`), others as they are."""
    side = (dataset_info or {}).get("whole_images_tile")
    if not side or any(s.crop is not None for s in samples):
        return samples
    return tile_whole_images(samples, int(side))
