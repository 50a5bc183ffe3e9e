"""Reading images of any layout, dataset detection and clear errors for bad folders."""

import cv2
import numpy as np
import pytest

from fabricad.data import decode_image, load_dataset, read_image
from fabricad.data.images import read_mask
from fabricad.errors import DataError, ImageReadError


def _encode(array: np.ndarray, ext: str = ".png") -> bytes:
    ok, buffer = cv2.imencode(ext, array)
    assert ok
    return buffer.tobytes()


def test_every_layout_becomes_uint8_rgb():
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    out = decode_image(_encode(gray))
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert (out[..., 0] == gray).all() and (out[..., 2] == gray).all()

    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's order
    assert (decode_image(_encode(bgr))[..., 2] == 200).all()  # ...is channel 2 in RGB

    bgra = np.dstack([bgr, np.full((4, 4), 7, np.uint8)])
    assert decode_image(_encode(bgra)).shape == (4, 4, 3)

    deep = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000)
    out16 = decode_image(_encode(deep))
    assert out16.dtype == np.uint8
    assert out16[..., 0].max() == round(deep.max() / 257)


@pytest.mark.parametrize("data,match", [(b"", "empty"), (b"hello world", "not a readable image")])
def test_undecodable_bytes(data, match):
    with pytest.raises(ImageReadError, match=match):
        decode_image(data, "upload")


def test_truncated_png(tmp_path):
    good = _encode(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    path = tmp_path / "cut.png"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(path)


def test_mask_union_and_size_check(tmp_path):
    a = np.zeros((6, 6), np.uint8)
    a[0, 0] = 255
    b = np.zeros((6, 6), np.uint8)
    b[5, 5] = 255
    cv2.imwrite(str(tmp_path / "a.png"), a)
    cv2.imwrite(str(tmp_path / "b.png"), b)
    mask = read_mask([tmp_path / "a.png", tmp_path / "b.png"], (6, 6))
    assert mask.sum() == 2 and mask[0, 0] and mask[5, 5]
    with pytest.raises(ImageReadError, match="mask is"):
        read_mask([tmp_path / "a.png"], (7, 7))


def test_mvtec_layout_by_category_folder_or_root(fabric_category):
    direct = load_dataset(fabric_category)
    via_root = load_dataset(fabric_category.parent, "plain")
    assert direct.format == via_root.format == "mvtec"
    assert len(direct.train) == 24
    labels = [s.label for s in direct.test]
    assert labels.count(0) == 4 and labels.count(1) == 8
    defective = next(s for s in direct.test if s.label)
    assert defective.mask_paths and defective.load_mask().any()
    assert not next(s for s in direct.test if not s.label).load_mask().any()


def test_unknown_layout_names_the_expected_ones(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path)
    assert "train/good" in str(info.value) and "photos" in str(info.value)


def test_missing_empty_and_traversal(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "absent")
    (tmp_path / "cat" / "train" / "good").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        load_dataset(tmp_path / "cat")
    with pytest.raises(DataError, match="invalid category"):
        load_dataset(tmp_path, "../etc")
