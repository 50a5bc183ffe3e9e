"""The machine bed beyond the fabric's edge (`fabricad.data.fabric_edges`): found to the edge,
and never taken from the fabric itself, its defects or its lighting."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fabricad.data import Sample
from fabricad.data.fabric_edges import background_columns, keep_columns
from fabricad.data.synthetic import DEFECT_TYPES, FABRICS, add_defect, render_fabric
from fabricad.evaluation import predict

HEIGHT, WIDTH, BED = 64, 640, 150


def bed(height: int, width: int, rng: np.random.Generator, level: float = 175.0) -> np.ndarray:
    """A machine bed as AITEX's scanner sees it: stripes along the rows, smooth across them."""
    rows = cv2.GaussianBlur(rng.normal(0, 12, (height, 1)).astype(np.float32), (0, 0), 1.5)
    texture = rng.normal(0, 1.5, (height, width)).astype(np.float32)
    return np.repeat(np.clip(level + rows + texture, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def fabric(seed: int, width: int = WIDTH, name: str = "fine-grey") -> np.ndarray:
    return render_fabric(FABRICS[name], HEIGHT, width, np.random.default_rng(seed))


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_machine_bed_beside_the_fabric_is_found_to_its_edge(side):
    rng = np.random.default_rng(0)
    scan = fabric(1)
    columns = np.s_[:BED] if side == "left" else np.s_[WIDTH - BED :]
    scan[:, columns] = bed(HEIGHT, BED, rng)
    background = background_columns(scan)
    expected = np.zeros(WIDTH, bool)
    expected[columns] = True
    assert (background != expected).sum() <= 4  # the edge to within a few columns
    assert background[columns].mean() > 0.97 and not background[BED + 4 : WIDTH - BED - 4].any()


@pytest.mark.parametrize("name", ["plain", "twill", "knit", "fine-grey"])
def test_fabric_alone_its_defects_and_its_lighting_are_never_background(name):
    rng = np.random.default_rng(3)
    for seed in range(3):
        assert not background_columns(fabric(seed, name=name)).any()
    for kind in DEFECT_TYPES:
        scan, mask = add_defect(fabric(10, name=name), kind, rng, FABRICS[name], strength=0.85)
        assert mask.any() and not background_columns(scan).any(), kind
    slope = np.linspace(0.85, 1.15, WIDTH)[None, :, None]  # a lamp brighter at one end
    assert not background_columns(np.clip(fabric(5, name=name) * slope, 0, 255).astype(np.uint8)).any()


def test_a_square_frame_is_not_searched():
    scan = fabric(1, width=HEIGHT * 4)[:, : HEIGHT]
    scan[:, :20] = bed(HEIGHT, 20, np.random.default_rng(0))
    assert not background_columns(scan).any()  # a frame of fabric, not a strip across the web


def _scan_with_bed(tmp_path) -> tuple[Sample, list[Sample]]:
    scan = fabric(1)
    scan[:, :BED] = bed(HEIGHT, BED, np.random.default_rng(0))
    path = tmp_path / "scan.png"
    cv2.imwrite(str(path), scan[..., ::-1])
    tiles = [Sample(path, crop=(x, 0, HEIGHT, HEIGHT), group=str(path)) for x in range(0, WIDTH, HEIGHT)]
    return Sample(path), tiles


def test_each_tile_keeps_the_columns_its_scan_has_on_fabric(tmp_path):
    whole, tiles = _scan_with_bed(tmp_path)
    keep = keep_columns(tiles, 32)  # maps at half the tile's size
    background = background_columns(whole.load())
    for tile, row in zip(tiles, keep):
        x = tile.crop[0]
        np.testing.assert_array_equal(row, (~background[x : x + HEIGHT : 2]).astype(np.float32))
    assert keep[:2].sum() == 0 and keep[2, :10].sum() == 0 and keep[2, -16:].all() and keep[3:].all()
    assert keep_columns([whole], 320)[0, :70].sum() == 0 and keep_columns([whole], 320)[0, 80:].all()


def test_an_unreadable_scan_is_a_clear_error(tmp_path):
    from fabricad.errors import ImageReadError

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="broken.png: not a readable image"):
        keep_columns([Sample(broken)], 32)


def test_evaluation_scores_a_scans_tiles_without_the_bed(tmp_path):
    """`predict(fabric_edges=True)` zeroes the bed's columns of every tile cut from the scan,
    and each tile's score is the maximum of what is left."""
    _, tiles = _scan_with_bed(tmp_path)

    def detector(batch):  # a map that is brightest on the left of every tile
        ramp = torch.linspace(2.0, 1.0, batch.shape[-1]).expand(len(batch), 1, *batch.shape[-2:])
        return ramp, ramp.amax(dim=(1, 2, 3))

    plain = predict(detector, tiles, (HEIGHT, HEIGHT), progress=False)
    edges = predict(detector, tiles, (HEIGHT, HEIGHT), progress=False, fabric_edges=True)
    np.testing.assert_allclose(plain.scores, 2.0)
    assert (edges.scores[:2] == 0).all() and edges.maps[:2].max() == 0  # tiles of bed alone
    assert 1.0 < edges.scores[2] < 1.8  # tile 2 lost its bed columns, the map's brightest
    np.testing.assert_array_equal(edges.maps[3:], plain.maps[3:])
