"""Dataset formats on generated folders: AITEX protocol, plain folders, TILDA; and tiling."""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from fabricad.data import load_dataset
from fabricad.data.aitex import ROLL_TO_FABRIC
from fabricad.data.tiling import (
    cut_window,
    native_size,
    network_size,
    reflect_pad,
    tile_boxes,
    tile_starts,
)
from fabricad.errors import DataError


@pytest.mark.parametrize(
    "length,tile,stride,expected",
    [(4096, 256, 256, list(range(0, 4096, 256))), (3796, 256, 256, list(range(0, 3584, 256)) + [3540]),
     (256, 256, 256, [0]), (100, 256, 256, [0]), (600, 256, 192, [0, 192, 344])],
)
def test_tile_starts(length, tile, stride, expected):
    starts = tile_starts(length, tile, stride)
    assert starts == expected
    assert starts[-1] + min(tile, length) == length  # the whole length is covered, nothing beyond


@pytest.mark.parametrize(
    "configured,native,expected",
    [((256, 256), (256, 256), (256, 256)), ((256, 256), (1024, 1024), (256, 256)),  # AITEX tiles; MVTec
     ((256, 256), (128, 128), (128, 128)), ((256, 256), (250, 400), (256, 256)),   # 128² scans; crops
     ((256, 256), (100, 600), (96, 256)), ((256, 256), (40, 40), (64, 64)),         # one side; the floor
     ((384, 384), (256, 256), (256, 256)), ((32, 32), (128, 128), (32, 32))],
)
def test_network_size_never_enlarges_beyond_the_images(configured, native, expected):
    assert network_size(configured, native) == expected


def test_native_size_is_the_tile_or_the_median_image(tmp_path):
    from fabricad.data.samples import Sample

    sizes = [(120, 90), (128, 96), (140, 100), (500, 700)]
    paths = []
    for i, (h, w) in enumerate(sizes):
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), np.zeros((h, w), np.uint8))
    assert native_size([Sample(p) for p in paths]) == (134, 98)  # medians, an outlier does not decide
    assert native_size([Sample(paths[3], crop=(0, 0, 256, 200))]) == (200, 256)  # a tile: its own size


def test_cut_window_takes_real_neighbours_and_reflects_only_past_the_border():
    rng = np.random.default_rng(0)
    scan = rng.integers(0, 255, (64, 256, 3), dtype=np.uint8)
    # An inner tile: its context is the scan itself, left and right; above and below reflected.
    inner = cut_window(scan, (64, 0, 64, 64), (64, 64), context=8)
    assert inner.shape == (80, 80, 3)
    assert np.array_equal(inner[8:72], scan[:, 56:136])
    assert np.array_equal(inner[:8, 8:72], scan[8:0:-1, 64:128])  # reflection without the edge row, as torch's
    # The first tile reflects on the left, where the scan ends.
    first = cut_window(scan, (0, 0, 64, 64), (64, 64), context=8)
    assert np.array_equal(first[8:72, :8], scan[:, 8:0:-1])
    assert np.array_equal(first[8:72, 8:80], scan[:, :72])
    # No context: just the tile; a whole image padded alike by reflection.
    assert np.array_equal(cut_window(scan, (64, 0, 64, 64), (64, 64)), scan[:, 64:128])
    assert np.array_equal(reflect_pad(scan, 8)[8:72, 8:264], scan)
    # Magnified tiles carry context in source pixels scaled alike: 4 source px → 8 network px.
    assert cut_window(scan, (64, 0, 32, 32), (64, 64), context=8).shape == (80, 80, 3)


def test_tile_boxes_cover_a_wide_scan():
    boxes = tile_boxes(256, 1000, 256)
    assert [b[0] for b in boxes] == [0, 256, 512, 744]
    assert all(b[2:] == (256, 256) for b in boxes)


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), array)


@pytest.fixture()
def fake_aitex(tmp_path) -> Path:
    """AITEX layout in miniature: fabric 02 with 16 normal images of 256x1000 (not a multiple of
    256) and two defective images, one with two masks, one whose alpha-carrying mask is RGBA."""
    rng = np.random.default_rng(0)
    roll = next(r for r, code in ROLL_TO_FABRIC.items() if code == "02")
    for i in range(16):
        _png(tmp_path / "NODefect_images" / roll / f"{i + 1:04d}_000_02.png", rng.integers(0, 255, (256, 1000), dtype=np.uint8))
    _png(tmp_path / "NODefect_images" / "2311694-2040n7u" / "0001_000_00.png", np.zeros((256, 1000), np.uint8))
    _png(tmp_path / "Defect_images" / "0050_002_02.png", rng.integers(0, 255, (256, 1000), dtype=np.uint8))
    _png(tmp_path / "Defect_images" / "0051_006_02.png", rng.integers(0, 255, (256, 1000), dtype=np.uint8))
    _png(tmp_path / "Defect_images" / "0052_006_00.png", rng.integers(0, 255, (256, 1000), dtype=np.uint8))
    m1 = np.zeros((256, 1000), np.uint8)
    m1[10:12, 20:22] = 255  # tile 0
    m2 = np.zeros((256, 1000), np.uint8)
    m2[100:110, 990:995] = 255  # only in the right-aligned last tile (744..1000)
    _png(tmp_path / "Mask_images" / "0050_002_02_mask1.png", m1)
    _png(tmp_path / "Mask_images" / "0050_002_02_mask2.png", m2)
    m3 = np.zeros((256, 1000, 4), np.uint8)
    m3[50:60, 300:310] = 255  # tile 1, RGBA with equal colour channels
    _png(tmp_path / "Mask_images" / "0051_006_02_mask.png", m3)
    _png(tmp_path / "Mask_images" / "0052_006_00_mask.png", m1)
    _png(tmp_path / "Defect_images" / "0053_010_02.png", rng.integers(0, 255, (256, 1000), dtype=np.uint8))
    _png(tmp_path / "Mask_images" / "0053_010_02_mask.png", np.zeros((256, 1000), np.uint8))  # as 0106_010_03's
    return tmp_path


def test_aitex_protocol(fake_aitex):
    split = load_dataset(fake_aitex, "02")
    assert split.format == "aitex"
    assert len(split.train) == 14 * 4  # first 14 normal images, 4 tiles each
    assert {s.group for s in split.train} == {f"{i:04d}_000_02.png" for i in range(1, 15)}
    normal_test = [s for s in split.test if s.defect_type == "good" and s.group.endswith("_000_02.png")]
    assert len(normal_test) == 2 * 4
    defective = {(s.group, s.crop[0]): s.label for s in split.test if s.group[:4] in ("0050", "0051")}
    assert defective == {
        ("0050_002_02.png", 0): 1, ("0050_002_02.png", 256): 0, ("0050_002_02.png", 512): 0, ("0050_002_02.png", 744): 1,
        ("0051_006_02.png", 0): 0, ("0051_006_02.png", 256): 1, ("0051_006_02.png", 512): 0, ("0051_006_02.png", 744): 0,
    }
    # a scan filed as defective whose mask marks nothing: normal tiles, a defective full image
    empty = [s for s in split.test if s.group == "0053_010_02.png"]
    assert len(empty) == 4 and {s.label for s in empty} == {0} and {s.full_image_label for s in empty} == {1}
    assert {s.full_image_label for s in normal_test} == {0}
    last = next(s for s in split.test if s.group == "0050_002_02.png" and s.crop[0] == 744)
    mask = last.load_mask()
    assert mask.shape == (256, 256) and mask.sum() == 50  # the union includes mask2's 10x5 pixels
    assert last.load().shape == (256, 256, 3)


def test_aitex_needs_a_valid_category(fake_aitex):
    with pytest.raises(DataError, match="--category"):
        load_dataset(fake_aitex)
    with pytest.raises(DataError, match="fabric code"):
        load_dataset(fake_aitex, "05x")


def test_aitex_models_are_served_by_tiles_of_the_training_size(fake_aitex, tmp_path):
    """A model trained on AITEX's 256² tiles resized to another input size (here 64², a quarter)
    is served by 256² tiles of the scan, each resized as training resized it, its map resized back."""
    from fabricad.data.images import read_image
    from fabricad.training import load_model, train
    from fabricad.training.torch_backend import load_engine
    from tests.conftest import quick_config

    train(quick_config(fake_aitex, **{"data.category": "02", "train.max_steps": "2"}), tmp_path / "run", progress=False)
    engine = load_engine(tmp_path / "run", backend="torch")
    assert engine.meta.preprocess.mode == "tile" and tuple(engine.meta.preprocess.tile) == (256, 256)
    assert load_model(tmp_path / "run")[0].roi_scale == 0.25  # the fabric ROI's sizes follow the tile too
    network, shapes = engine.backend, []
    engine.backend = lambda batch: shapes.append(batch.shape) or network(batch)
    scan = read_image(fake_aitex / "Defect_images" / "0050_002_02.png")
    result = engine.inspect(scan)
    # tiles at x = 0, 256, 512 and the right-aligned 744, each with 32 network px (128 scan px)
    # of its neighbours on every side (`model.tile_context`, the default)
    assert shapes == [(4, 128, 128, 3)]
    assert result.anomaly_map.shape == (256, 1000)
    tile_map = network(cut_window(scan, (0, 0, 256, 256), (64, 64), context=32)[None])[0][0]
    expected = cv2.resize(tile_map, (256, 256), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(result.anomaly_map[:, :256], expected, rtol=1e-5, atol=1e-6)


def test_tile_context_from_training_to_both_engines(fake_aitex, tmp_path):
    """`model.tile_context`: the model is trained on tiles padded by their real neighbours, and
    evaluation, the PyTorch engine and the exported ONNX graph all score a scan's tiles that way."""
    import torch

    from fabricad.data.images import read_image
    from fabricad.evaluation import predict
    from fabricad.export.onnx_export import export_bundle
    from fabricad.inference.engine import InferenceEngine
    from fabricad.training import load_model, train
    from fabricad.training.torch_backend import load_engine
    from tests.conftest import quick_config

    overrides = {"data.category": "02", "train.max_steps": "2", "model.tile_context": "true", "model.pad": "16"}
    train(quick_config(fake_aitex, **overrides), tmp_path / "run", progress=False)
    model, ckpt = load_model(tmp_path / "run")
    export_bundle(model, ckpt, tmp_path / "bundle", progress=False)
    torch_engine = load_engine(tmp_path / "run", backend="torch", align=False)
    onnx_engine = InferenceEngine.load(tmp_path / "bundle", align=False)
    assert onnx_engine.meta.preprocess.context == 16 and onnx_engine.meta.graph_input == (96, 96)
    network, shapes = torch_engine.backend, []
    torch_engine.backend = lambda batch: shapes.append(batch.shape) or network(batch)
    scan = read_image(fake_aitex / "Defect_images" / "0050_002_02.png")
    result = torch_engine.inspect(scan)
    assert shapes == [(4, 96, 96, 3)] and result.anomaly_map.shape == (256, 1000)
    np.testing.assert_allclose(onnx_engine.inspect(scan).anomaly_map, result.anomaly_map, atol=1e-4)
    # Evaluation's map of the second tile (x 256..512) is the engine's there.
    split = load_dataset(fake_aitex, "02")
    tiles = [s for s in split.test if s.group == "0050_002_02.png"]
    second = next(i for i, s in enumerate(tiles) if s.crop[0] == 256)
    with torch.no_grad():
        maps = predict(model, tiles, (64, 64), progress=False).maps
    expected = cv2.resize(maps[second].astype(np.float32), (256, 256), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(result.anomaly_map[:, 256:512], expected, atol=2e-3)  # float16 maps
    # And the neighbours matter: the same tile reflected instead scores otherwise.
    alone = network(np.pad(cv2.resize(scan[:, 256:512], (64, 64), interpolation=cv2.INTER_AREA)[None],
                           [(0, 0), (16, 16), (16, 16), (0, 0)], mode="reflect"))[0][0]
    assert np.abs(alone - maps[second]).max() > 1e-2


def _images(folder: Path, count: int, rng) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"{i:03d}.png"
        _png(path, rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def test_folder_dataset_with_masks(tmp_path):
    rng = np.random.default_rng(1)
    _images(tmp_path / "good", 10, rng)
    _images(tmp_path / "scratch", 3, rng)
    mask = np.zeros((40, 40), np.uint8)
    mask[5:9, 5:9] = 255
    _png(tmp_path / "masks" / "scratch" / "000.png", mask)
    split = load_dataset(tmp_path)
    assert split.format == "folder"
    assert len(split.train) == 8 and sum(1 for s in split.test if s.label == 0) == 2
    scratches = [s for s in split.test if s.label == 1]
    assert len(scratches) == 3 and scratches[0].defect_type == "scratch"
    assert scratches[0].load_mask().sum() == 16
    assert not scratches[1].load_mask().any()  # no mask file: image-level label only


def test_a_folder_of_photos_is_a_dataset_of_normal_images(tmp_path):
    """A mill's first data is a directory of pictures of good fabric: `--data` takes it as is,
    and defect folders beside the pictures still count."""
    rng = np.random.default_rng(3)
    photos = tmp_path / "photos"
    _images(photos, 10, rng)
    split = load_dataset(photos)
    assert split.format == "folder"
    assert len(split.train) == 8 and [s.label for s in split.test] == [0, 0]
    assert {s.path.parent for s in split.train + split.test} == {photos}
    _images(photos / "hole", 2, rng)
    split = load_dataset(photos)
    assert split.format == "tilda" and [s.defect_type for s in split.test if s.label] == ["hole", "hole"]
    assert len(split.train) == 8  # the defect folder's pictures never join training
    assert load_dataset(tmp_path, "photos").train == split.train  # a root plus --category too


def test_tilda_class_folders(tmp_path):
    rng = np.random.default_rng(2)
    _images(tmp_path / "good", 5, rng)
    _images(tmp_path / "oil spot", 2, rng)
    _images(tmp_path / "hole", 2, rng)
    split = load_dataset(tmp_path)
    assert split.format == "tilda"
    assert sorted({s.defect_type for s in split.test if s.label}) == ["hole", "oil spot"]
    assert all(not s.mask_paths for s in split.test)


AITEX = Path(os.environ.get("FABRICAD_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")) / "aitex"


@pytest.mark.aitex
@pytest.mark.skipif(not AITEX.is_dir(), reason="AITEX database not available (set FABRICAD_DATA)")
def test_real_aitex_fabric_02_counts():
    """Numbers stated in METHOD.md for fabric 02: 38 defective images give 39 defective tiles."""
    split = load_dataset(AITEX, "02")
    assert len(split.train) == 14 * 16
    assert len(split.test) == 704
    assert sum(s.label for s in split.test) == 39
    assert len({s.group for s in split.test if s.label}) == 38


def test_conversion_to_mvtec_round_trips(fake_aitex, tmp_path):
    """AITEX tiles → MVTec folders → loaded again: same counts, same labels, masks kept."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("to_mvtec", Path(__file__).resolve().parents[1] / "datasets" / "to_mvtec.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    target = module.convert(fake_aitex, "02", tmp_path / "out")
    original = load_dataset(fake_aitex, "02")
    converted = load_dataset(target)
    assert converted.format == "mvtec"
    assert len(converted.train) == len(original.train)
    assert sorted(s.label for s in converted.test) == sorted(s.label for s in original.test)
    masks = [s.load_mask().sum() for s in converted.test if s.label]
    assert sorted(masks) == sorted(s.load_mask().sum() for s in original.test if s.label)
