"""The default on any folder of images, and every command's answer to a wrong invocation.

A new user's first folder is not AITEX: photos of all sizes and aspects, grey or colour or with
alpha, 8 or 16 bit, one image or fifty. Whatever it is, train → eval → export → serve must run,
and each default heuristic must decide for itself whether its premise holds.
"""

from __future__ import annotations

import functools
import json
import logging

import cv2
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fabricad.data.alignment import TextureReference, amplitude_spectrum, periodicity
from fabricad.data.synthetic import FABRICS, Scene, generate_category, render_fabric
from fabricad.data.tiling import mixed_sizes, tile_whole_images, whole_image_tile
from tests.conftest import quick_config
from tests.live_server import ADMIN, Server, png

LAYOUTS = ("gray8", "rgb8", "rgba8", "gray16")
PIXEL_BUDGET = 3_000_000
"""Pixels of one generated folder at most: its largest side shrinks as it holds more images
(one image may be 1500² px, fifty at most about 245² each), so an example trains and is scored
in seconds on two cores while both extremes of size and count are still drawn."""


@functools.cache
def surface(fabric: str) -> np.ndarray:
    """A large piece of the fabric to cut the folder's photos from (rendered once per run)."""
    return render_fabric(FABRICS[fabric], 1500, 1500, np.random.default_rng(7))


def as_layout(rgb: np.ndarray, layout: str) -> np.ndarray:
    """What cv2.imwrite is given for a file of `layout` (OpenCV's BGR order)."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if layout == "gray8":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    if layout == "rgba8":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    if layout == "gray16":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
    return bgr


@st.composite
def image_folders(draw):
    count = draw(st.integers(1, 50))
    largest = int(np.clip(np.sqrt(PIXEL_BUDGET / count), 32, 1500))
    side = st.integers(32, largest)
    sizes = [(draw(side), draw(side)) for _ in range(count)]
    layouts = [draw(st.sampled_from(LAYOUTS)) for _ in range(count)]
    fabric = draw(st.sampled_from(["twill", "felt", "knit"]))
    return fabric, sizes, layouts


@pytest.mark.slow
@example(folder=("twill", [(1500, 1500)], ["rgba8"]))  # the largest side, alone
@example(folder=("knit", [(1500, 40), (40, 1500), (300, 300)], ["gray16", "rgb8", "gray8"]))  # extreme aspects
@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(folder=image_folders())
def test_any_folder_of_images_trains_evaluates_exports_and_serves(folder, tmp_path_factory):
    from fabricad.evaluation import evaluate_checkpoint
    from fabricad.export.onnx_export import export_checkpoint
    from fabricad.training import train

    fabric, sizes, layouts = folder
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(len(sizes))
    piece = surface(fabric)
    (root / "good").mkdir()
    for i, ((h, w), layout) in enumerate(zip(sizes, layouts)):
        y, x = rng.integers(0, 1500 - h + 1), rng.integers(0, 1500 - w + 1)
        cv2.imwrite(str(root / "good" / f"{i:03d}.png"), as_layout(piece[y : y + h, x : x + w], layout))
    (root / "hole").mkdir()
    defect = piece[:max(sizes[0][0], 32), :max(sizes[0][1], 32)].copy()
    cv2.circle(defect, (defect.shape[1] // 2, defect.shape[0] // 2), max(3, min(defect.shape[:2]) // 8), (10, 10, 10), -1)
    cv2.imwrite(str(root / "hole" / "000.png"), as_layout(defect, layouts[0]))

    config = quick_config(root, **{"train.max_steps": "2", "data.image_size": "64", "model.check_premises": "true"})
    run = root.parent / f"{root.name}-run"
    train(config, run, progress=False)
    metrics = evaluate_checkpoint(run, run / "eval", progress=False)
    assert metrics["defective_count"] >= 1 and (run / "eval" / "report.md").is_file()
    bundle = export_checkpoint(run, root.parent / f"{root.name}-models" / "any", progress=False)
    server = Server(bundle.parent, root.parent / f"{root.name}-svc")
    try:
        answer = httpx.post(f"{server.url}/v1/inspect", content=png(defect), headers={"content-type": "image/png",
                            "x-api-key": ADMIN}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["verdict"] in ("OK", "DEFECT")
    finally:
        server.stop()


# --- each heuristic checks its premise -----------------------------------------------------------

def test_texture_alignment_takes_windows_of_odd_size_inside_the_image():
    """The crash a new user met: windows of odd width around a rounded centre ran one pixel out."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (h, w), dtype=np.uint8) for h, w in ((246, 123), (250, 301), (247, 123))]
    reference = TextureReference.from_images(images)
    assert reference.size == (246, 123)
    assert amplitude_spectrum(images[0], reference.size).shape == (246, 62)
    reference.align(images[1])  # no exception, whatever the sizes


def test_periodicity_tells_a_weave_from_random_fibres():
    rng = np.random.default_rng(0)
    for name in ("plain", "twill", "knit", "fine-grey"):
        assert periodicity(render_fabric(FABRICS[name], 256, 256, rng)) > 0.6, name
    assert periodicity(render_fabric(FABRICS["felt"], 256, 256, rng)) < 0.2
    assert periodicity(rng.integers(0, 255, (256, 256), dtype=np.uint8)) < 0.1
    assert periodicity(np.full((64, 64), 128, np.uint8)) == 0.0  # flat: nothing repeats


def test_mixed_sizes_are_tiled_at_their_own_scale(tmp_path):
    folder = generate_category(tmp_path, "twill", n_train=12, n_test_good=2, n_test_defect=4, scene=Scene(), progress=False)
    from fabricad.data import load_dataset
    from fabricad.data.images import image_size

    split = load_dataset(folder)
    sizes = [image_size(s.path) for s in split.train]
    assert mixed_sizes(sizes) and not mixed_sizes([(256, 256)] * 9 + [(256, 250)])
    side = whole_image_tile(sizes, (256, 256))
    assert side % 32 == 0 and 64 <= side <= min(min(s) for s in sizes) + 32
    tiles = tile_whole_images(split.test, side)
    defective = [s for s in split.test if s.label]
    for sample in defective:  # a defective image's tiles are labelled by its mask, its score is their max
        mine = [t for t in tiles if t.path == sample.path]
        assert any(t.label for t in mine) and all(t.image_label == 1 and t.group == str(sample.path) for t in mine)
        assert sum(t.load_mask().sum() for t in mine) >= sample.load_mask().sum()


def test_each_heuristic_turns_itself_off_where_its_premise_fails(tmp_path, caplog):
    """Photos of a nonwoven of mixed sizes: no weave, no scan, no flat background — all three
    rules off with a line each, saved in the checkpoint and followed by the bundle."""
    from fabricad.export.onnx_export import export_checkpoint
    from fabricad.training import read_checkpoint, train

    folder = generate_category(tmp_path, "felt", n_train=10, n_test_good=2, n_test_defect=2, scene=Scene(), progress=False)
    with caplog.at_level(logging.WARNING):
        train(quick_config(folder, **{"model.check_premises": "true"}), tmp_path / "run", progress=False)
    said = [r.getMessage() for r in caplog.records]
    for name in ("align_texture", "fabric_edges", "fabric_roi"):
        assert sum(f"model.{name} off" in m for m in said) == 1, (name, said)
    ckpt = read_checkpoint(tmp_path / "run")
    model = ckpt.config.model
    assert not (model.align_texture or model.fabric_edges or model.fabric_roi) and ckpt.texture is None
    meta = json.loads((export_checkpoint(tmp_path / "run", tmp_path / "b", progress=False) / "model.json").read_text())
    assert meta["model"]["fabric_roi"] is False and meta["model"]["fabric_edges"] is False and not meta["texture"]
    assert meta["preprocess"]["mode"] == "resize"  # whole images are resized unless data.whole_images=tile

    # Without the ROI, a frame of bare background (a web break) is still no fabric, not fabric.
    from fabricad.inference.engine import InferenceEngine

    engine = InferenceEngine.load(tmp_path / "b")
    blank = engine.inspect(np.full((200, 300, 3), 255, np.uint8))
    assert not blank.fabric_in_view and blank.score == 0.0 and not blank.is_defect
    felt = cv2.imread(str(sorted((folder / "test" / "good").glob("*.png"))[0]))
    assert engine.inspect(felt[:, :, ::-1]).fabric_in_view
    half = felt[:, :, ::-1].copy()
    half[:, : half.shape[1] // 2] = 255  # half a frame of table: fabric is in view, and scored
    assert engine.inspect(half).fabric_in_view

    # Served, the model that looks for no fabric edge refuses a selvedge band, with the reason.
    (tmp_path / "models").mkdir()
    (tmp_path / "b").rename(tmp_path / "models" / "felt")
    server = Server(tmp_path / "models", tmp_path / "svc")
    try:
        url = f"{server.url}/v1/models/felt/operating-point"
        refused = httpx.put(url, json={"mm_per_px": 0.5, "selvedge_mm": 20}, headers={"X-API-Key": ADMIN})
        assert refused.status_code == 422 and "fabric edges" in refused.json()["detail"]
        assert httpx.get(url).status_code == 404  # nothing was set
        assert httpx.put(url, json={"mm_per_px": 0.5, "min_area_mm2": 2}, headers={"X-API-Key": ADMIN}).status_code == 200
    finally:
        server.stop()


def test_whole_images_tiled_at_their_own_scale_from_training_to_the_engine(tmp_path):
    """`data.whole_images=tile`: training, evaluation, calibration and the bundle all cut each
    image into the same native tiles, and an image's score is its tiles' maximum."""
    from fabricad.evaluation import evaluate_checkpoint
    from fabricad.export.onnx_export import export_checkpoint
    from fabricad.inference.engine import InferenceEngine
    from fabricad.training import read_checkpoint, train

    folder = generate_category(tmp_path, "twill", n_train=10, n_test_good=3, n_test_defect=4, scene=Scene(sides=(70, 150)),
                               progress=False)
    train(quick_config(folder, **{"data.whole_images": "tile"}), tmp_path / "run", progress=False)
    ckpt = read_checkpoint(tmp_path / "run")
    assert ckpt.training["dataset"]["whole_images_tile"] == 64 and ckpt.training["dataset"]["tiled"]
    metrics = evaluate_checkpoint(tmp_path / "run", tmp_path / "eval", progress=False)
    assert metrics["full_images"] == {"normal": 3, "defective": 4}  # scored per image, from its tiles
    assert metrics["defective_count"] >= 4 and "tile_auroc" in metrics
    bundle = export_checkpoint(tmp_path / "run", tmp_path / "b", progress=False)
    engine = InferenceEngine.load(bundle)
    assert engine.mode == "tile" and engine.tile_size == (64, 64)
    image = cv2.imread(str(sorted((folder / "test" / "good").glob("*.png"))[0]))[:, :, ::-1]
    result = engine.inspect(image)
    assert result.anomaly_map.shape == image.shape[:2]


def test_premises_that_hold_leave_the_defaults_on(tmp_path, caplog):
    """Wide scans of a weave beside a flat white background: every rule keeps its default, and
    `model.check_premises=false` keeps settings that fail their premise as given."""
    from fabricad.training import read_checkpoint, train

    folder = generate_category(tmp_path, "twill", size=(64, 256), n_train=6, n_test_good=1, n_test_defect=1, progress=False)
    for path in (folder / "train" / "good").glob("*.png"):
        image = cv2.imread(str(path))
        image[:, -24:] = 255  # the scanner's white beyond the web
        cv2.imwrite(str(path), image)
    with caplog.at_level(logging.WARNING):
        train(quick_config(folder, **{"model.check_premises": "true"}), tmp_path / "run", progress=False)
    assert not [r for r in caplog.records if " off: " in r.getMessage()]
    model = read_checkpoint(tmp_path / "run").config.model
    assert model.align_texture and model.fabric_edges and model.fabric_roi

    felt = generate_category(tmp_path / "f", "felt", size=(64, 64), n_train=6, n_test_good=1, n_test_defect=1, progress=False)
    train(quick_config(felt, **{"model.check_premises": "false"}), tmp_path / "kept", progress=False)
    model = read_checkpoint(tmp_path / "kept").config.model
    assert model.align_texture and model.fabric_edges and model.fabric_roi


def test_checkpoints_store_the_data_path_absolute(tmp_path, monkeypatch, fabric_category):
    from fabricad.training import read_checkpoint, train

    monkeypatch.chdir(fabric_category.parent)
    train(quick_config(fabric_category.name), tmp_path / "run", progress=False)
    stored = read_checkpoint(tmp_path / "run").config.data.path
    assert stored == str(fabric_category.resolve())
