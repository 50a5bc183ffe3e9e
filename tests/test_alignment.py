"""Texture alignment: a scan whose weave is sheared, mirrored or squeezed against the training
scans' is found, scored aligned, and its map lands back on its own pixels."""

import cv2
import numpy as np
import pytest
import torch

from fabricad.data import Sample
from fabricad.data.alignment import Alignment, TextureReference, shear
from fabricad.data.tiling import tile_starts
from fabricad.errors import CheckpointError
from fabricad.evaluation.evaluate import predict, scan_alignments

H, W = 256, 1536


def twill(seed: int, k: float = 0.0, mirror: bool = False, noise: float = 8.0, squeeze: float = 1.0) -> np.ndarray:
    """A two-wave twill (waves of 5.3 and 11 px along a diagonal) at a random phase, its rows
    `squeeze` times closer (a web running faster than the camera's line rate), then mirrored and
    sheared like a drifting web, with sensor noise; RGB uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0 : W + 200].astype(np.float32)
    y *= squeeze
    phase = rng.uniform(0, 2 * np.pi, 2)
    image = 128 + 50 * np.sin(2 * np.pi * (0.15 * x - 0.12 * y) + phase[0]) + 25 * np.sin(2 * np.pi * (0.06 * x + 0.07 * y) + phase[1])
    image = image[:, 100 : 100 + W]
    if mirror:
        image = image[:, ::-1]
    if k:
        image = shear(np.ascontiguousarray(image), k)
    image = image + rng.normal(0, noise, image.shape)
    return cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)


@pytest.fixture(scope="module")
def reference() -> TextureReference:
    return TextureReference.from_images([twill(seed) for seed in range(3)])


def test_a_scan_like_the_training_scans_is_left_alone(reference):
    assert reference.align(twill(10)).identity


@pytest.mark.parametrize("k", [0.3, -0.2, 0.45])
def test_a_sheared_scan_is_sheared_back(reference, k):
    found = reference.align(twill(11, k=k))
    assert not found.mirror and found.stretch == 1.0
    assert found.shear == pytest.approx(-k, abs=0.03)
    assert found.gain > 0.01


def test_a_mirrored_scan_is_mirrored_back(reference):
    found = reference.align(twill(12, mirror=True))
    assert found.mirror and abs(found.shear) <= 0.03


@pytest.mark.parametrize("squeeze", [2.0, 3.0])
def test_a_scan_with_its_rows_closer_together_is_stretched_back(reference, squeeze):
    found = reference.align(twill(16, squeeze=squeeze))
    assert found.stretch == squeeze
    assert not found.mirror and abs(found.shear) <= 0.03
    assert "stretched" in found.describe()


def test_a_sheared_and_squeezed_scan_is_both_stretched_and_sheared_back(reference):
    found = reference.align(twill(17, k=0.3, squeeze=2.0))
    assert found.stretch == 2.0
    # Stretched first, the scan's shear of 0.3 per row is 0.15 per stretched row.
    assert found.shear == pytest.approx(-0.15, abs=0.03)


def test_a_texture_without_weave_is_left_alone():
    rng = np.random.default_rng(0)
    noise = [cv2.GaussianBlur(rng.integers(0, 256, (H, W), dtype=np.uint8), (5, 5), 1.5) for _ in range(4)]
    reference = TextureReference.from_images(noise[:3])
    assert reference.align(noise[3]).identity
    assert reference.align(cv2.flip(noise[3], 1)).identity


def test_images_too_small_have_no_reference_and_small_scans_are_not_aligned(reference):
    assert TextureReference.from_images([np.zeros((20, 300), np.uint8)]) is None
    assert TextureReference.from_images([]) is None
    assert reference.align(twill(13, k=0.3)[:100, :200]).identity


def test_undo_puts_the_map_back_on_the_scan_pixels():
    image = cv2.GaussianBlur(twill(14).astype(np.float32)[..., 0], (0, 0), 2)  # what resampling keeps
    for alignment in (Alignment(mirror=True), Alignment(shear=0.3), Alignment(mirror=True, shear=-0.4)):
        back = alignment.undo(alignment.apply(image))
        inner = np.s_[:, 100:-100]  # the sides take reflected pixels
        assert np.abs(back[inner] - image[inner]).mean() < 1.0
        assert np.abs(alignment.apply(image)[inner] - image[inner]).mean() > 10
    for alignment in (Alignment(stretch=2.0), Alignment(stretch=1.75, shear=0.2)):
        aligned = alignment.apply(image)
        assert aligned.shape == (round(H * alignment.stretch), W)
        back = alignment.undo(aligned)
        assert back.shape == image.shape
        assert np.abs(back[:, 100:-100] - image[:, 100:-100]).mean() < 1.0
    # Every height comes back exactly (the engine blanks columns of the map by the scan's own):
    for height in range(1, 300, 7):
        for stretch in (1.01, 1.3, 1.49, 1.5, 2.0, 2.7, 3.0):
            assert Alignment(stretch=stretch).undo(Alignment(stretch=stretch).apply(np.zeros((height, 8), np.float32))).shape == (height, 8)


def test_reference_survives_encoding(reference):
    stored = TextureReference.decode(reference.encode())
    assert stored.size == reference.size
    np.testing.assert_allclose(stored.spectrum, reference.spectrum, atol=1e-3)
    assert stored.align(twill(11, k=0.3)).shear == reference.align(twill(11, k=0.3)).shear
    assert TextureReference.decode({}) is None
    damaged = [{"size": [256, 256]}, {**reference.encode(), "size": [128, 128]},
               {**reference.encode(), "spectrum_f16": "not base64!"}]
    for stored in damaged:  # a tampered model.json: a message, not a traceback from numpy
        with pytest.raises(CheckpointError, match="texture reference is damaged"):
            TextureReference.decode(stored)


@pytest.mark.parametrize("squeeze", [1.0, 2.0])
def test_evaluation_scores_an_aligned_scan_on_its_own_pixels(tmp_path, reference, squeeze):
    """A detector whose map is its input's brightness: scored aligned, the maps must still show
    each tile's own pixels, i.e. the map was moved back before the tiles were cut (for a
    stretched scan: scored in two rows of tiles, and shrunk back)."""
    path = tmp_path / "scan.png"
    scan = twill(15, k=0.35, squeeze=squeeze)
    cv2.imwrite(str(path), cv2.cvtColor(scan, cv2.COLOR_RGB2BGR))
    samples = [Sample(path, crop=(x, 0, 256, 256), group="scan") for x in tile_starts(W, 256, 256)]

    def brightness(batch: torch.Tensor):
        amap = batch.mean(1, keepdim=True)
        return amap, amap.amax(dim=(1, 2, 3))

    plain = predict(brightness, samples, (256, 256), progress=False)
    aligned = predict(brightness, samples, (256, 256), progress=False, reference=reference)
    gray = scan[..., 0].astype(np.float32) / 255
    found = scan_alignments(samples, reference)
    assert found[path].shear == pytest.approx(-0.35 / squeeze, abs=0.03)
    assert found[path].stretch == squeeze
    # What resampling there and back leaves of the scan's own pixels (a stretch smooths the
    # fine twill); a map cut from the wrong place would be off by the twill's whole contrast.
    expected = found[path].undo(found[path].apply(gray))
    for i, s in enumerate(samples):
        x = s.crop[0]
        np.testing.assert_allclose(plain.maps[i].astype(np.float32), gray[:, x : x + 256], atol=2e-3)
        columns = np.arange(x, x + 256)
        inside = (columns >= 150) & (columns < W - 150)  # the scan's ends take reflected pixels
        error = np.abs(aligned.maps[i].astype(np.float32) - expected[:, x : x + 256])[:, inside].mean()
        assert error < 0.02, (i, error)
