"""Hypothesis-generated corrupt images: the upload path answers an image or a 4xx, nothing else."""

import cv2
import numpy as np
import pytest
from fastapi import HTTPException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabricad.service.uploads import decode_upload

rng = np.random.default_rng(0)
_image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
SEEDS = {
    "png": cv2.imencode(".png", _image)[1].tobytes(),
    "jpeg": cv2.imencode(".jpg", _image)[1].tobytes(),
    "gray16": cv2.imencode(".png", (_image[..., 0].astype(np.uint16) * 257))[1].tobytes(),
    "bmp": cv2.imencode(".bmp", _image)[1].tobytes(),
    "tiff": cv2.imencode(".tif", _image)[1].tobytes(),
    "webp": cv2.imencode(".webp", _image)[1].tobytes(),
}


def _check(data: bytes) -> None:
    try:
        image = decode_upload(data, max_pixels=10_000_000)
    except HTTPException as exc:
        assert 400 <= exc.status_code < 500 and exc.detail
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(sorted(SEEDS)),
    cut=st.floats(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=8),
    tail=st.binary(max_size=64),
)
def test_mutated_images_never_escape_as_server_errors(seed, cut, flips, tail):
    data = bytearray(SEEDS[seed][: max(1, int(len(SEEDS[seed]) * cut))] if cut < 0.98 else SEEDS[seed])
    for position, value in flips:
        data[min(int(position * len(data)), len(data) - 1)] = value
    _check(bytes(data) + tail)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes(data):
    _check(data)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_intact_seeds_decode(name):
    assert decode_upload(SEEDS[name], max_pixels=10_000_000).shape[:2] == (48, 64)


@pytest.mark.parametrize("ext", [".ppm", ".pgm"])
def test_formats_outside_the_list_are_refused_by_name(ext):
    """OpenCV could decode these, but the upload path accepts only the formats it names."""
    data = cv2.imencode(ext, _image if ext == ".ppm" else _image[..., 0])[1].tobytes()
    with pytest.raises(HTTPException) as caught:
        decode_upload(data, max_pixels=10_000_000)
    assert caught.value.status_code == 415 and "PNG, JPEG" in caught.value.detail
