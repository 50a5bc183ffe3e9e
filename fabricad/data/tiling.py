"""Cutting wide scans into tiles (the AITEX-256 rule, reused by inference on wide images)."""

from __future__ import annotations


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


def magnification(tile: tuple[int, int] | list[int] | None, size: tuple[int, int]) -> float:
    """Network pixels per source pixel when native (height, width) tiles are resized to `size`;
    1 for datasets without a fixed tile (resized whole images have no single scale)."""
    if not tile:
        return 1.0
    return (size[0] / tile[0] + size[1] / tile[1]) / 2
